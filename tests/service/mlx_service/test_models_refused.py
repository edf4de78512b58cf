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


CASES = {
    unsupported_type: "model_type 'gpt2' is not supported (supported: bert, modernbert, qwen3, "
                      "xlm_roberta)",
    no_weights: "the folder has no weights",
    only_pytorch_bin: "only in pytorch_model.bin",
    no_tokenizer: "has no tokenizer",
    truncated_safetensors: "model.safetensors is truncated",
    garbage_safetensors: "not a valid safetensors file",
    pad_token_contradicted: "pad_token_id 2",
    special_token_missing: "pad_token '[PAD]' is not in its vocabulary",
    weight_missing: "lack 1 parameter(s)",
}


@pytest.mark.parametrize("spoil", list(CASES), ids=[f.__name__ for f in CASES])
def test_refused_at_once_with_exit_2_and_one_sentence(tmp_path, service_py, spoil):
    folder = tmp_path / "model"
    shutil.copytree(TINY / "xlmr-mean", folder)
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
    for name in ("bert-cls", "xlmr-mean", "modernbert-mean", "qwen3-last"):
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
