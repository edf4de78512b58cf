"""Rerankers in the other forms they are published in: float16 and bfloat16 weights (computed
in float32 on the CPU, on the fast path) and MLX 8-bit quantized folders (the MLX layers; the
head's quantized weights dequantized once), scored against the float32 sentence-transformers
reference. mlx-embeddings' convert refuses classifier folders, so the quantized copies are
made by scorer_variants.py with mx.quantize as convert would (group size 64).

Measured (28 pairs each, worst over the pairs; raw logits, scores, correlation of the raw):
float16 BERT 0.0017 / 0.0004 / 1.0, float16 Qwen3 0.010 / 0.0013 / 1.0, bfloat16 ModernBERT
0.018 / 0.0042 / 0.99998; 8-bit XLM-R 0.046 / 0.0088 / 0.9984, 8-bit Qwen3 0.28 / 0.033 /
0.9994, 8-bit BERT 0.046 / 0.0097 / 0.9993.
The random tiny models have large weights (initializer range 0.2): quantization error is
larger than on a trained model's.
"""
from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path

import pytest

from tests.service.mlx_service.test_service_cpu_fast import run_in_service_venv
from tests.service_support import spawn_env
from tests.support import FIXTURES

RERANKERS = FIXTURES / "tiny-rerankers"
REFERENCE = json.loads((RERANKERS / "reference.json").read_text())
VARIANTS = Path(__file__).with_name("scorer_variants.py")
# (fixture, how it is made, its argument) -> (worst raw error allowed, least correlation)
CASES = {("bert-rerank", "copy", "float16"): (0.01, 0.9999),
         ("qwen3-rerank", "copy", "float16"): (0.05, 0.9999),
         ("modernbert-rerank", "copy", "bfloat16"): (0.05, 0.999),
         ("xlmr-rerank", "quantize", "8"): (0.12, 0.995),
         ("qwen3-rerank", "quantize", "8"): (0.6, 0.995),
         ("bert-rerank", "quantize", "8"): (0.12, 0.995)}
SCRIPT = r"""
import json, sys
from mlx_service.models.scorer import Scorer
from mlx_service.models.scorer_folder import read_scorer_spec
ref = json.load(open("tests/fixtures/tiny-rerankers/reference.json"))
out = {}
for folder in FOLDERS:
    sc = Scorer(read_scorer_spec(folder))
    rows = [r for q in ref["queries"] for r in sc.tokenize_pairs(q, ref["documents"])]
    raw = sc.score(rows)
    out[folder] = {"raw": raw.ravel().tolist(), "scores": sc.activate(raw).ravel().tolist(),
                   "describe": sc.describe()}
print(json.dumps(out))
"""


def correlation(a, b) -> float:
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    return cov / (sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b)) ** 0.5


@pytest.fixture(scope="module")
def variants(tmp_path_factory, service_py):
    root = tmp_path_factory.mktemp("variants")
    folders = {}
    for model, how, arg in CASES:
        dest = root / f"{model}-{how}-{arg}"
        done = subprocess.run([str(service_py), str(VARIANTS), how, str(RERANKERS / model),
                               str(dest), arg], env=spawn_env(), capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        folders[(model, how, arg)] = str(dest)
    got = run_in_service_venv(service_py, SCRIPT.replace("FOLDERS", repr(list(
        folders.values()))), timeout=900)
    return {case: got[folder] for case, folder in folders.items()}


@pytest.mark.parametrize("case", list(CASES), ids=["-".join(c) for c in CASES])
def test_published_forms_score_as_the_reference(variants, case):
    model, how, arg = case
    got, ref = variants[case], REFERENCE["models"][model]
    want_raw = [x for row in ref["raw"] for x in row]
    worst_raw = max(abs(a - b) for a, b in zip(got["raw"], want_raw))
    most, least = CASES[case]
    assert worst_raw <= most, f"{case}: worst raw error {worst_raw:.4f}"
    assert correlation(got["raw"], want_raw) >= least
    want = [x for row in ref["scores"] for x in row]
    assert max(abs(a - b) for a, b in zip(got["scores"], want)) <= 0.05
    info = got["describe"]
    if how == "copy":
        assert info["weights"] == f"{arg} safetensors"
        assert info["dtype"] == f"float32 (from {arg})" and info["forward"] == "cpu-fast"
    else:
        assert info["weights"] == "MLX 8-bit quantized (group size 64)"
        assert info["quantization"] == {"group_size": 64, "bits": 8}
        assert info["forward"] == "mlx"  # the fast path takes float weights only
