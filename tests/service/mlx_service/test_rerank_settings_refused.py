"""RERANK_MODEL that cannot be served: exit 2 and one sentence, before the service listens or
loads anything, as for EMBEDDINGS_MODEL (issue 24, item 1); a folder in the wrong setting is
refused naming the right one, and `--check-rerank-model` (what `inv verify` runs) says the
same."""
from __future__ import annotations

import subprocess

import pytest

from tests.service_support import default_python, spawn_env
from tests.support import FIXTURES, REPO_ROOT, free_port

RERANKER = FIXTURES / "tiny-rerankers" / "bert-rerank"
EMBEDDER = FIXTURES / "tiny-models" / "bert-cls"


def run_service(*args: str, **env: str) -> subprocess.CompletedProcess:
    env = spawn_env(MLX_HOST="127.0.0.1", MLX_PORT=str(free_port()), **env)
    return subprocess.run([str(default_python()), "-m", "mlx_service", *args], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("env, words", [
    ({"RERANK_MODEL": str(EMBEDDER)}, ["embedding model", "EMBEDDINGS_MODEL", "RERANK_MODEL"]),
    ({"RERANK_MODEL": "/nonexistent/reranker"}, ["RERANK_MODEL=", "no such model folder"]),
    ({"EMBEDDINGS_MODEL": str(RERANKER)}, ["cross-encoder", "RERANK_MODEL"]),
])
def test_a_folder_that_cannot_be_served_exits_2_in_one_sentence(env, words):
    done = run_service(**env)
    assert done.returncode == 2, done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mlx_service: error: "), lines
    for word in words:
        assert word in lines[0], lines[0]


def test_check_rerank_model_says_ok_or_why():
    ok = run_service("--check-rerank-model", str(RERANKER))
    assert ok.returncode == 0 and "ok (BertForSequenceClassification" in ok.stdout, ok.stdout
    bad = run_service("--check-rerank-model", str(EMBEDDER))
    assert bad.returncode == 2 and "EMBEDDINGS_MODEL" in bad.stdout, bad.stdout
    unset = run_service("--check-rerank-model")
    assert unset.returncode == 0 and "RERANK_MODEL is unset" in unset.stdout
