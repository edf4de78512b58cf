"""The reranker's runner (mlx_service/models/scorer.py) against sentence-transformers 6.3's
CrossEncoder: every fixture in tests/fixtures/tiny-rerankers (BERT with pooler, XLM-R, ModernBERT
with mean classifier pooling, Qwen3 + LogitScore with its chat template, a 3-label BERT NLI
classifier), batched and one pair at a time, on the CPU fast path and on the MLX layers
(MLX_CPU_FAST=0): raw logits within 2e-3 and scores within 1e-3 of reference.json, its rank
order, the classifier's labels and softmax, Qwen3's scores with an instruction.

Measured (2 shared cores, MLX CPU): raw within 8e-6 and scores within 3e-6 of the reference on
both paths. The runner is driven in the service's venv (MLX lives there); each test reads what
the script printed.
"""
from __future__ import annotations

import json
import statistics

import pytest

from tests.service.mlx_service.test_service_cpu_fast import run_in_service_venv
from tests.support import FIXTURES

RERANKERS = FIXTURES / "tiny-rerankers"
REFERENCE = json.loads((RERANKERS / "reference.json").read_text())
MODELS = ("bert-rerank", "xlmr-rerank", "modernbert-rerank", "qwen3-rerank", "bert-nli")
RAW_TOLERANCE, SCORE_TOLERANCE = 2e-3, 1e-3

EVERY_FIXTURE = r"""
import json
import numpy as np
from mlx_service.models.scorer import Scorer
from mlx_service.models.scorer_folder import read_scorer_spec

ref = json.load(open("tests/fixtures/tiny-rerankers/reference.json"))
out = {}
for name, m in ref["models"].items():
    spec = read_scorer_spec("tests/fixtures/tiny-rerankers/" + name)
    for fast in (True, False):
        sc = Scorer(spec, cpu_fast=fast)
        rows = [r for q in ref["queries"] for r in sc.tokenize_pairs(q, ref["documents"])]
        raw = sc.score(rows)  # every pair of every query in one batch
        one = np.concatenate([sc.score([r]) for r in rows])
        got = {"describe": sc.describe(), "kind": sc.kind, "labels": sc.labels,
               "activation": sc.activation, "max_length": sc.max_length,
               "num_labels": sc.num_labels, "pad_id": sc.pad_id,
               "lengths": [len(r) for r in rows],
               "raw": raw.tolist(), "one": one.tolist(), "scores": sc.activate(raw).tolist(),
               "raw_scores": sc.activate(raw, raw=True).tolist(),
               "softmax": sc.softmax(raw).tolist(), "dtype": str(raw.dtype)}
        if "instruction" in m:
            rows = [r for q in ref["queries"]
                    for r in sc.tokenize_pairs(q, ref["documents"], m["instruction"])]
            got["instruction_scores"] = sc.activate(sc.score(rows)).tolist()
        else:  # /predict's inputs: the same pairs, and single texts, in one call
            items = [(ref["queries"][0], d) for d in ref["documents"]] + ref["documents"][:2]
            ids = sc.tokenize_inputs(items)
            got["inputs_pairs_equal"] = ids[:7] == [r for r in sc.tokenize_pairs(
                ref["queries"][0], ref["documents"])]
            got["inputs_single_lengths"] = [len(r) for r in ids[7:]]
        out[f"{name} {'fast' if fast else 'mlx'}"] = got
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def every_fixture(service_py):
    return run_in_service_venv(service_py, EVERY_FIXTURE, timeout=900)


def flat(value) -> list[float]:
    """Every number of nested lists, in order (the test venv has no numpy)."""
    if isinstance(value, (list, tuple)):
        return [x for item in value for x in flat(item)]
    return [float(value)]


def worst(got, want) -> float:
    got, want = flat(got), flat(want)
    assert len(got) == len(want)
    return max(abs(a - b) for a, b in zip(got, want))


def by_query(scores) -> list[list[float]]:
    values, width = flat(scores), len(REFERENCE["documents"])
    return [values[i:i + width] for i in range(0, len(values), width)]


@pytest.mark.parametrize("path", ["fast", "mlx"])
@pytest.mark.parametrize("name", MODELS)
def test_raw_and_scores_equal_sentence_transformers(every_fixture, name, path):
    got, ref = every_fixture[f"{name} {path}"], REFERENCE["models"][name]
    assert got["describe"]["forward"] == ("cpu-fast" if path == "fast" else "mlx")
    assert got["dtype"] == "float32" and got["num_labels"] == ref["num_labels"]
    # the references' spread: a wrong head or tokenization would be far off, not near
    assert statistics.pstdev(flat(ref["raw"])) > 0.2
    for key in ("raw", "one", "raw_scores"):
        err = worst(got[key], ref["raw"])
        assert err <= RAW_TOLERANCE, f"{name} {path} {key}: worst {err:.2e}"
    err = worst(got["scores"], ref["scores"])
    assert err <= SCORE_TOLERANCE, f"{name} {path} scores: worst {err:.2e}"
    assert got["activation"] == ref["activation"].lower()
    assert got["max_length"] == ref["max_length"]
    # the long document really is cut to the window (one row per query)
    assert max(got["lengths"]) == ref["max_length"]


@pytest.mark.parametrize("name", [m for m in MODELS if m != "bert-nli"])
def test_rank_order_is_the_references(every_fixture, name):
    ref = REFERENCE["models"][name]
    for path in ("fast", "mlx"):
        scores = by_query(every_fixture[f"{name} {path}"]["scores"])
        ranks = [sorted(range(len(row)), key=lambda i: -row[i]) for row in scores]
        assert ranks == ref["rank"], f"{name} {path}"


def test_classifier_labels_and_softmax(every_fixture):
    ref = REFERENCE["models"]["bert-nli"]
    for path in ("fast", "mlx"):
        got = every_fixture[f"bert-nli {path}"]
        assert got["labels"] == ref["labels"] == ["contradiction", "entailment", "neutral"]
        assert got["kind"] == "sequence-classification" and got["activation"] == "identity"
        assert worst(got["softmax"], ref["softmax"]) <= SCORE_TOLERANCE
        assert all(abs(sum(row) - 1.0) < 1e-5 for row in got["softmax"])
        # /predict's inputs: pairs as tokenize_pairs gives them, single texts on their own
        assert got["inputs_pairs_equal"] and all(n > 2 for n in got["inputs_single_lengths"])


def test_qwen3_with_an_instruction(every_fixture):
    ref = REFERENCE["models"]["qwen3-rerank"]
    want = ref["instruction_scores"]
    for path in ("fast", "mlx"):
        got = every_fixture[f"qwen3-rerank {path}"]
        assert got["kind"] == "causal-lm-logit-score" and got["labels"] == ["LABEL_0"]
        assert "two rows of the tied embedding table" in got["describe"]["head"]
        assert worst(got["instruction_scores"], want) <= SCORE_TOLERANCE
        # the instruction changes the scores: it really reaches the template
        assert worst(want, ref["scores"]) > 0.05


def test_describe_names_what_is_served(every_fixture):
    got = every_fixture["modernbert-rerank fast"]["describe"]
    assert got["architecture"] == "ModernBertForSequenceClassification"
    assert got["kind"] == "sequence-classification" and got["max_length"] == 256
    assert got["head"].startswith("head (dense, gelu, LayerNorm) on the mean of the tokens")
    assert got["weights"] == "float32 safetensors" and got["dtype"] == "float32"
    assert {"forward", "layers", "precision", "labels", "activation"} <= got.keys()
