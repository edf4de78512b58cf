"""RERANK_MODEL through the real `inv` (issue 24, item 1): `inv mlx start` passes it to the
service, `inv mlx status` names the reranker, `inv verify` checks its folder with the service's
own check, as it does for EMBEDDINGS_MODEL."""
from __future__ import annotations

import json

from tests.support import FIXTURES, health, inv, isolated_env

RERANKER = FIXTURES / "tiny-rerankers" / "bert-rerank"
EMBEDDER = FIXTURES / "tiny-models" / "bert-cls"


def test_mlx_start_serves_rerank_model_and_status_names_it(tmp_path):
    env = isolated_env(tmp_path, RERANK_MODEL=str(RERANKER))
    try:
        started = inv("mlx", "start", env=env, timeout=240)
        assert started.returncode == 0, started.stderr
        code, body = health(int(env["MLX_PORT"]))
        assert code == 200 and body["rerank_model"] == "bert-rerank", body
        status = inv("mlx", "status", env=env, timeout=60)
        assert "reranker bert-rerank" in status.stdout, status.stdout
    finally:
        inv("mlx", "stop", env=env, timeout=120)


def rerank_checks(env: dict) -> list[dict]:
    done = inv("verify", "--json", env=env, timeout=300)
    checks = json.loads(done.stdout)["checks"]  # JSON only on stdout, whatever the verdict
    return [c for c in checks if c["name"] == "rerank model"]


def test_verify_checks_the_rerank_model_folder(tmp_path):
    good = rerank_checks(isolated_env(tmp_path, RERANK_MODEL=str(RERANKER)))
    assert [c["status"] for c in good] == ["pass"], good
    assert "BertForSequenceClassification" in good[0]["detail"]
    wrong = rerank_checks(isolated_env(tmp_path, RERANK_MODEL=str(EMBEDDER)))
    assert [c["status"] for c in wrong] == ["fail"], wrong
    assert "EMBEDDINGS_MODEL" in wrong[0]["detail"] and "RERANK_MODEL" in wrong[0]["fix"]
    assert rerank_checks(isolated_env(tmp_path, RERANK_MODEL="")) == []
