"""`inv status --json` names the served model as the service's /info describes it:
architecture, pooling and where it came from, prompts, weights and forward path."""
from __future__ import annotations

import jsonschema

from tasks.core.settings import load_settings
from tasks.stack.status_doc import load_schema, mlx_status
from tests.support import FIXTURES, isolated_env


def test_status_names_the_served_model(tmp_path, service_factory):
    svc = service_factory("--model", str(FIXTURES / "tiny-models" / "qwen3-last"))
    env = isolated_env(tmp_path, MLX_PORT=str(svc.port), MLX_HOST="127.0.0.1")
    doc = mlx_status(load_settings(environ=env))
    assert doc["responding"] is True
    model = doc["model"]
    assert model["name"] == "qwen3-last" and model["architecture"] == "qwen3"
    assert model["pooling"] == ["lasttoken"] and model["pooling_source"] == "1_Pooling/config.json"
    assert model["prompts"] == {"names": ["query", "document"], "default": None}
    assert model["weights"] == "float32 safetensors" and model["forward"] == "cpu-fast"
    assert model["layers"] == "mlx_embeddings.models.qwen3"
    schema = load_schema()
    jsonschema.Draft202012Validator({**schema["properties"]["mlx"],
                                     "$defs": schema.get("$defs", {})}).validate(doc)
    svc.stop()
    assert mlx_status(load_settings(environ=env))["model"] is None  # no answer: no model
