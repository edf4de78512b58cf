"""Reranker folders that cannot be served are refused in one sentence that says why
(mlx_service/models/scorer_folder.py, read without MLX): no classifier weights, a chat template
without the pair roles, a LogitScore token id outside the vocabulary, an architecture that is
not a reranker's, an embedding model given as RERANK_MODEL; and a cross-encoder given as
EMBEDDINGS_MODEL is refused by the service and by --check-model, naming RERANK_MODEL.

Run in the service's venv (Jinja2, tokenizers): each case prints what the folder check says.
"""
from __future__ import annotations

import json
import shutil
import struct
import subprocess

import pytest

from tests.service.mlx_service.test_service_cpu_fast import run_in_service_venv
from tests.service_support import spawn_env
from tests.support import FIXTURES, REPO_ROOT, free_port

RERANKERS = FIXTURES / "tiny-rerankers"
CHECK = r"""
import json, sys
from mlx_service.models.folder import ModelError
from mlx_service.models.roles import folder_role
from mlx_service.models.scorer_folder import read_scorer_spec, scorer_problems
out = {}
for folder in json.loads(sys.argv[1] if len(sys.argv) > 1 else FOLDERS):
    try:
        read_scorer_spec(folder)
        refused = None
    except ModelError as exc:
        refused = str(exc)
    out[folder] = {"problems": scorer_problems(folder), "refused": refused,
                   "role": folder_role(folder)}
print(json.dumps(out))
"""


def edit_json(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def drop_tensors(path, prefix: str):
    """The safetensors file without the tensors named prefix* (header edited; bytes kept)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    for name in [k for k in header if k.startswith(prefix)]:
        header.pop(name)
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n:])


def no_classifier(d):
    drop_tensors(d / "model.safetensors", "classifier.")


def untied_without_lm_head(d):
    edit_json(d / "config.json", tie_word_embeddings=False)  # and the folder has no lm_head


def template_without_pair_roles(d):
    """A chat model's own template: turns of any role, no query or document."""
    (d / "chat_template.jinja").write_text(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def template_without_query(d):
    """The reranker's template, its query role renamed 'user'."""
    text = (d / "chat_template.jinja").read_text()
    (d / "chat_template.jinja").write_text(text.replace("'eq', 'query'", "'eq', 'user'"))


def template_naming_but_dropping_the_roles(d):
    """Names both roles, renders neither message."""
    (d / "chat_template.jinja").write_text(
        "{% set pair = ['query', 'document'] %}<|im_start|>assistant\n")


def logit_score_outside_vocabulary(d):
    edit_json(d / "1_LogitScore" / "config.json", true_token_id=99999)


def unsupported_architecture(d):
    edit_json(d / "config.json", architectures=["DebertaV2ForSequenceClassification"],
              model_type="deberta-v2")


CASES = {
    ("bert-rerank", no_classifier): "no classifier head (classifier.weight, classifier.bias "
                                    "missing)",
    ("xlmr-rerank", no_classifier): "no classifier head (classifier.dense.weight",
    ("modernbert-rerank", no_classifier): "no classifier head (classifier.weight missing)",
    ("qwen3-rerank", untied_without_lm_head): "no classifier head (lm_head.weight missing)",
    ("qwen3-rerank", template_without_pair_roles): "does not render the pair roles 'query' "
                                                   "and 'document'",
    ("qwen3-rerank", template_without_query): "(it never names 'query')",
    ("qwen3-rerank", template_naming_but_dropping_the_roles): "(no 'query', 'document' "
                                                              "message in its output)",
    ("qwen3-rerank", logit_score_outside_vocabulary): "true_token_id 99999 is outside the "
                                                      "vocabulary (vocab_size 3000",
    ("bert-nli", unsupported_architecture): "DebertaV2ForSequenceClassification is not a "
                                            "reranker architecture this service runs "
                                            "(supported: BertForSequenceClassification",
}


@pytest.fixture(scope="module")
def spoiled(tmp_path_factory, service_py):
    root = tmp_path_factory.mktemp("spoiled")
    folders = {}
    for (model, spoil) in CASES:
        folder = root / f"{model}-{spoil.__name__}"
        shutil.copytree(RERANKERS / model, folder)
        spoil(folder)
        folders[(model, spoil)] = str(folder)
    fine = [str(RERANKERS / m) for m in ("bert-rerank", "xlmr-rerank", "modernbert-rerank",
                                         "qwen3-rerank", "bert-nli")]
    embedding = str(FIXTURES / "tiny-models" / "qwen3-last")
    script = CHECK.replace("FOLDERS", repr(json.dumps([*folders.values(), *fine, embedding])))
    return folders, fine, embedding, run_in_service_venv(service_py, script)


@pytest.mark.parametrize("case", list(CASES), ids=[f"{m}-{s.__name__}" for m, s in CASES])
def test_unservable_reranker_refused_in_one_sentence(spoiled, case):
    folders, _, _, got = spoiled
    result = got[folders[case]]
    assert result["refused"] is not None and CASES[case] in result["refused"], result
    assert result["refused"].startswith(f"reranker {folders[case]}: ")
    assert result["problems"] == [result["refused"].split(": ", 1)[1]]
    assert "\n" not in result["refused"] and "Traceback" not in result["refused"]


def test_every_fixture_is_a_servable_scorer(spoiled):
    _, fine, _, got = spoiled
    for folder in fine:
        assert got[folder] == {"problems": [], "refused": None, "role": "scorer"}, folder


def test_an_embedding_model_as_rerank_model_names_embeddings_model(spoiled):
    _, _, embedding, got = spoiled
    result = got[embedding]
    assert result["role"] == "embedding"
    assert "is an embedding model (Qwen3Model" in result["refused"]
    assert "set it as EMBEDDINGS_MODEL" in result["refused"]
    assert result["problems"] == [result["refused"].split(": ", 1)[1]]


@pytest.mark.parametrize("model", ["bert-rerank", "qwen3-rerank"])
def test_a_cross_encoder_as_embeddings_model_is_refused_naming_rerank_model(service_py, model):
    folder = RERANKERS / model
    env = spawn_env(MLX_HOST="127.0.0.1", MLX_PORT=str(free_port()))
    check = subprocess.run([str(service_py), "-m", "mlx_service", "--check-model", str(folder)],
                           cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert check.returncode == 2, check.stdout + check.stderr
    [line] = check.stdout.splitlines()  # one sentence, not a list of follow-on problems
    assert line.startswith(f"{folder}: this folder is a cross-encoder (")
    assert "set it as RERANK_MODEL" in line
    served = subprocess.run([str(service_py), "-m", "mlx_service", "--model", str(folder)],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert served.returncode == 2, served.stderr
    errors = [x for x in served.stderr.splitlines() if "mlx_service: error:" in x]
    assert len(errors) == 1 and "RERANK_MODEL" in errors[0] and "cross-encoder" in errors[0]
    assert "Traceback" not in served.stderr
