"""Folders that cannot be served end the process at once: exit 2 and one sentence that says
why (and what is supported), before the service listens; `--check-model` lists the same
problems, one line each. Nothing answers 503 forever."""
from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from tests.service_support import spawn_env
from tests.support import FIXTURES, REPO_ROOT, free_port

TINY = FIXTURES / "tiny-models"


def edit_json(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def unsupported_type(d):
    edit_json(d / "config.json", model_type="gpt2")


def no_weights(d):
    (d / "model.safetensors").unlink()


def only_pytorch_bin(d):
    (d / "model.safetensors").rename(d / "pytorch_model.bin")


def no_tokenizer(d):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (d / name).unlink()


def truncated_safetensors(d):
    path = d / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garbage_safetensors(d):
    (d / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")


def pad_token_contradicted(d):
    edit_json(d / "config.json", pad_token_id=2)  # the tokenizer pads with <pad> = 1


def special_token_missing(d):
    edit_json(d / "tokenizer_config.json", pad_token="[PAD]")  # not in the Unigram vocab


def weight_missing(d):
    """Valid files, but a layer's weight is gone: found only when MLX loads them."""
    import struct
    raw = (d / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header.pop("encoder.layer.1.output.dense.weight")
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    (d / "model.safetensors").write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n:])


def dense_contradicts_hidden_size(d):
    """(bert-dense-tanh) a Dense that takes 32 values after a 64-wide pooling."""
    edit_json(d / "2_Dense" / "config.json", in_features=32)


def dense_contradicts_its_weights(d):
    edit_json(d / "2_Dense" / "config.json", out_features=40)  # the weight is 48 x 64


def dense_activation_unknown(d):
    edit_json(d / "2_Dense" / "config.json",
              activation_function="torch.nn.modules.activation.Hardshrink")


def unknown_module_type(d):
    modules = json.loads((d / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Projection",
                       "type": "my_package.layers.Projection"})
    (d / "modules.json").write_text(json.dumps(modules))


def needs_remote_code(d):
    """A nomic-bert / jina-bert style folder: its layers are code shipped beside it."""
    edit_json(d / "config.json", model_type="nomic_bert",
              auto_map={"AutoConfig": "configuration_hf_nomic_bert.NomicBertConfig",
                        "AutoModel": "modeling_hf_nomic_bert.NomicBertModel"})


SERVED = ("bert, distilbert, gemma3_text, mistral, modernbert, mpnet, qwen2, qwen3, "
          "xlm_roberta")
CASES = {
    unsupported_type: f"model_type 'gpt2' is not supported (supported: {SERVED})",
    no_weights: "the folder has no weights",
    only_pytorch_bin: "only in pytorch_model.bin",
    no_tokenizer: "has no tokenizer",
    truncated_safetensors: "model.safetensors is truncated",
    garbage_safetensors: "not a valid safetensors file",
    pad_token_contradicted: "pad_token_id 2",
    special_token_missing: "pad_token '[PAD]' is not in its vocabulary",
    weight_missing: "lack 1 parameter(s)",
    dense_contradicts_hidden_size: "the Dense module '2_Dense' takes 32 values but gets 64",
    dense_contradicts_its_weights: "linear.weight has shape [48, 64], its config says [40, 64]",
    dense_activation_unknown: "'torch.nn.modules.activation.Hardshrink', which this service "
                              "does not run",
    unknown_module_type: "modules.json has a Projection module (my_package.layers.Projection), "
                         "which this service does not run (it runs Transformer, Pooling, Dense, "
                         "Normalize)",
    needs_remote_code: "the model needs remote code (config.json's auto_map names AutoModel: "
                       f"modeling_hf_nomic_bert.NomicBertModel), which this service does not "
                       f"run; it serves these architectures: {SERVED}",
}
# The folder each case spoils (xlm-r's unless said).
BASE = {dense_contradicts_hidden_size: "bert-dense-tanh",
        dense_contradicts_its_weights: "bert-dense-tanh",
        dense_activation_unknown: "bert-dense-tanh"}


@pytest.mark.parametrize("spoil", list(CASES), ids=[f.__name__ for f in CASES])
def test_refused_at_once_with_exit_2_and_one_sentence(tmp_path, service_py, spoil):
    folder = tmp_path / "model"
    shutil.copytree(TINY / BASE.get(spoil, "xlmr-mean"), folder)
    spoil(folder)
    env = spawn_env(MLX_HOST="127.0.0.1", MLX_PORT=str(free_port()))
    started = time.monotonic()
    done = subprocess.run([str(service_py), "-m", "mlx_service", "--model", str(folder)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "mlx_service: error:" in line]
    assert len(errors) == 1 and CASES[spoil] in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert took < 20  # no waiting for a health check that never comes
    if spoil is weight_missing:
        return  # only loading finds it; the folder check reads headers, not tensor lists
    check = subprocess.run([str(service_py), "-m", "mlx_service", "--check-model", str(folder)],
                           cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert check.returncode == 2 and CASES[spoil] in check.stdout, check.stdout + check.stderr
    assert all(line.startswith(f"{folder}: ") for line in check.stdout.splitlines())


def test_check_model_passes_every_fixture(service_py):
    for name in ("bert-cls", "xlmr-mean", "modernbert-mean", "qwen3-last", "mpnet-mean",
                 "distilbert-cls", "gemma3-dense", "bert-dense-tanh", "qwen2-last",
                 "mistral-last"):
        done = subprocess.run([str(service_py), "-m", "mlx_service", "--check-model",
                               str(TINY / name)], cwd=REPO_ROOT, env=spawn_env(),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and ": ok (" in done.stdout, done.stdout + done.stderr


def test_verify_checks_the_configured_folder_one_line_per_problem(tmp_path, service_py):
    from tasks.checks.verify import FAIL, PASS, check_model
    from tasks.core.settings import load_settings

    folder = tmp_path / "model"
    shutil.copytree(TINY / "qwen3-last", folder)
    settings = load_settings(environ={**spawn_env(), "EMBEDDINGS_MODEL": str(folder)})
    [good] = check_model(settings, service_py)
    assert good.status == PASS and "qwen3, pooling lasttoken" in good.detail
    unsupported_type(folder)
    no_tokenizer(folder)
    garbage_safetensors(folder)
    checks = check_model(settings, service_py)
    assert [c.status for c in checks] == [FAIL] * 3, checks
    details = " | ".join(c.detail for c in checks)
    for case in (unsupported_type, no_tokenizer, garbage_safetensors):
        assert CASES[case] in details
