"""`inv bench --model FOLDER` / `--random-model NAME`: the folder reaches the service, the
in-process worker and the peer alike; the random models have the checkpoints' real names and
the published widths; the report says the model, its precision and the cost per layer."""
from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import pytest

from tasks.bench.errors import BenchError
from tasks.bench.models import RANDOM_MODELS, bench_model, model_folder
from tasks.bench.report import format_model
from tasks.bench.run import BenchOptions
from tests.support import FIXTURES, REPO_ROOT

SCRIPT = REPO_ROOT / "tasks" / "bench" / "scripts" / "random_model.py"
spec = importlib.util.spec_from_file_location("random_model", SCRIPT)
random_model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(random_model)


def safetensors_header(path: Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes of a safetensors file, from its JSON header (no numpy needed)."""
    with open(path, "rb") as handle:
        size = struct.unpack("<Q", handle.read(8))[0]
        header = json.loads(handle.read(size))
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


@pytest.mark.parametrize("fixture,arch", [("qwen3-last", "qwen3"), ("xlmr-mean", "xlm-roberta"),
                                          ("modernbert-mean", "modernbert")])
def test_random_model_names_and_shapes_are_the_checkpoints(fixture, arch):
    folder = FIXTURES / "tiny-models" / fixture
    config = json.loads((folder / "config.json").read_text())
    want = safetensors_header(folder / "model.safetensors")
    assert random_model.shapes_of(arch, config) == want


def test_random_models_are_the_published_widths():
    assert set(random_model.SHAPES) == set(RANDOM_MODELS)
    qwen = random_model.SHAPES["qwen3-embedding-0.6b"][1]
    assert (qwen["hidden_size"], qwen["num_attention_heads"], qwen["num_key_value_heads"],
            qwen["head_dim"], qwen["intermediate_size"]) == (1024, 16, 8, 128, 3072)
    assert random_model.SHAPES["multilingual-e5-small"][1]["hidden_size"] == 384
    assert random_model.SHAPES["modernbert-base"][1]["hidden_size"] == 768


def test_model_folder_reaches_every_engine(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    options = BenchOptions(model=model_folder(tmp_path))
    assert options.model_env == {"EMBEDDINGS_MODEL": str(tmp_path.resolve())}
    assert options.model_args == ["--model", str(tmp_path.resolve())]
    assert BenchOptions().model_env == {} and BenchOptions().model_args == []


def test_bad_model_flags_are_one_clear_error(tmp_path):
    with pytest.raises(BenchError, match="no config.json"):
        model_folder(tmp_path)
    with pytest.raises(BenchError, match="give one"):
        bench_model(None, str(tmp_path), "modernbert-base")
    with pytest.raises(BenchError, match="is not one of"):
        bench_model(type("S", (), {"root": tmp_path})(), None, "bert-huge")


def test_report_names_precision_and_cost_per_layer():
    service = {"model": "qwen3-embedding-0.6b", "forward": "cpu-fast", "precision": "fp32",
               "precision_reason": "auto: fp32, this CPU has no bf16 units", "layers": 2}
    shapes = {"workloads": [{"name": "corpus", "inprocess": 10.0, "peer": 8.0}]}
    line = format_model(service, shapes)
    assert "precision fp32 (auto: fp32, this CPU has no bf16 units)" in line
    assert "2 layers, whole corpus ms per text per layer: service 50.00, peer 62.50" in line
