"""The CPU fast path for every architecture that has one (BERT, XLM-R, ModernBERT, Qwen3;
DistilBERT and BERT with a Dense head on BERT's; MPNet's, BERT's with a position bias; Gemma
3's, bidirectional with a 9-token window on its sliding layers; Qwen2
and Mistral on Qwen3's, Mistral also with a sliding window shorter than the texts) and its
precisions (mlx_service/kernels/gemm.py, precision.py), run in the service's venv on the tiny
fixtures.

fp32 must give the MLX layers' vectors (to float32 rounding); bf16 (emulated on a CPU without
bf16 units) must pass the self-check truthfully; the self-check must catch wrong vectors.
"""
from __future__ import annotations

import sys

import pytest

from tests.service.mlx_service.test_service_cpu_fast import run_in_service_venv

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the CPU fast path is what Linux runs")

EVERY_MODEL = r"""
import json, shutil, tempfile
import numpy as np
from mlx_service.kernels.precision import min_cosine
from mlx_service.models.embedder import Embedder
from mlx_service.models.folder import read_spec

TINY = "tests/fixtures/tiny-models/"
ref = json.load(open(TINY + "reference.json"))
ref["models"].update(json.load(open(TINY + "more-reference.json"))["models"])
texts = ref["texts"] + ["word " * 200]  # longer than ModernBERT's 32-token window
# Mistral with an 8-token sliding window: no reference of sentence-transformers', so its
# bf16 is compared with the MLX layers' vectors.
window = tempfile.mkdtemp() + "/mistral-window8"
shutil.copytree(TINY + "mistral-last", window)
cfg = json.load(open(window + "/config.json"))
cfg["sliding_window"] = 8
json.dump(cfg, open(window + "/config.json", "w"))
out = {}
for name in MODELS:
    spec = read_spec(window if name == "mistral-window8" else TINY + name)
    slow = Embedder(spec, cpu_fast=False)
    fast = Embedder(spec, cpu_fast=True, precision="fp32")
    bf16 = Embedder(spec, cpu_fast=True, precision="bf16")
    rows = fast.tokenize(texts)
    want = slow.embed(rows)
    one = np.stack([fast.embed([r])[0] for r in rows[:6]])
    out[name] = {
        "forward": fast.forward, "slow_forward": slow.forward,
        "fp32_batched": min_cosine(fast.embed(rows), want),
        "fp32_one": min_cosine(one, want[:6]),
        "fp32_reason": fast.precision_reason,
        "bf16": bf16.precision, "bf16_reason": bf16.precision_reason,
        "bf16_check": bf16.precision_check,
        "bf16_vs_reference": min_cosine(bf16.embed(rows), np.array(
            ref["models"][name]["embeddings"] + [want[-1].tolist()]
            if name in ref["models"] else want)),
        "vs_unwindowed": min_cosine(want[:-1], np.array(ref["models"]["mistral-last"]["embeddings"]))
        if name == "mistral-window8" else None,
        "longest": max(len(r) for r in rows),
    }
print(json.dumps(out))
"""


FAST_MODELS = ["bert-cls", "xlmr-mean", "modernbert-mean", "qwen3-last", "distilbert-cls",
               "bert-dense-tanh", "qwen2-last", "mistral-last", "mistral-window8", "mpnet-mean",
               "gemma3-dense"]


@pytest.fixture(scope="module")
def every_model(service_py):
    return run_in_service_venv(service_py, f"MODELS = {FAST_MODELS!r}\n" + EVERY_MODEL,
                               timeout=600)


@pytest.mark.parametrize("name", FAST_MODELS)
def test_fp32_fast_path_gives_the_mlx_layers_vectors(every_model, name):
    got = every_model[name]
    assert got["forward"] == "cpu-fast" and got["slow_forward"] == "mlx"
    assert got["fp32_batched"] >= 0.99999 and got["fp32_one"] >= 0.99999
    assert got["fp32_reason"].startswith("fp32: MLX_PRECISION=fp32; self-check min cos 1.0")
    assert got["longest"] > 64  # mixed lengths, past the sliding window


def test_the_sliding_window_is_applied(every_model):
    # Texts longer than the window come out otherwise than without one (both passes agree:
    # the test above).
    assert every_model["mistral-window8"]["vs_unwindowed"] < 0.99


@pytest.mark.parametrize("name", FAST_MODELS)
def test_bf16_passes_the_self_check_and_stays_near_the_reference(every_model, name):
    got = every_model[name]
    if name not in FAST_MODELS[:4] and got["bf16"] == "fp32":
        # The newer fixtures' random weights (initializer_range 0.2) can take bf16 below the
        # check's 0.9999 (measured 0.99964-0.99986 on Qwen2, Mistral, DistilBERT): then fp32,
        # saying why.
        assert "failed the self-check (min cos 0.99" in got["bf16_reason"], got["bf16_reason"]
        assert got["bf16_vs_reference"] >= 0.9999  # the fp32 it fell back to
        return
    assert got["bf16"] in ("bf16", "bf16-emulated")  # emulated where units or oneMKL lack
    assert got["bf16_check"] >= 0.9999
    assert f"self-check min cos {got['bf16_check']:.6f}" in got["bf16_reason"]
    assert got["bf16_vs_reference"] >= 0.999  # bf16 rounding on random tiny weights


ROUNDING_AND_CHECK = r"""
import json
import numpy as np
import mlx.core as mx
from mlx_service.kernels import gemm, precision

rng = np.random.default_rng(3)
x = np.concatenate([rng.standard_normal(100000).astype(np.float32) * 50,
                    np.array([0, -0.0, 1e-40, 3.3895314e38, 1.00390625, 1.01171875], np.float32)])
ours = gemm.to_bf16_bits(x)
mlx_bits = np.array(mx.array(x).astype(mx.bfloat16).view(mx.uint16))
# A bf16 GEMM's products are exact in float32: the emulated Linear equals rounding first.
w = rng.standard_normal((48, 32)).astype(np.float32)
a = rng.standard_normal((5, 32)).astype(np.float32)
emulated = np.array(gemm.Linear(mx.array(w), None, "bf16-emulated")(mx.array(a)))
rounded = lambda v: (gemm.to_bf16_bits(v).astype(np.uint32) << 16).view(np.float32)
exact = rounded(a).astype(np.float64) @ rounded(w).astype(np.float64).T
reference = np.array(gemm.Linear(mx.array(w), mx.array(w[:, 0].copy()), "reference")(mx.array(a)))

good = rng.standard_normal((4, 16))
bad = good[::-1].copy()
table = {"reference": good, "fp32": good, "bf16": bad}
bf16_falls_back = precision.self_check(precision.Choice("bf16", "bf16: MLX_PRECISION=bf16"),
                                       table.__getitem__)
# auto's headroom: rows at an exact cosine to the reference (an orthogonal part of size t)
def at_cosine(c):
    ortho = rng.standard_normal(good.shape)
    ortho -= (ortho * good).sum(1, keepdims=True) / (good * good).sum(1, keepdims=True) * good
    ortho *= np.linalg.norm(good, axis=1, keepdims=True) / np.linalg.norm(ortho, axis=1, keepdims=True)
    return good + np.sqrt(1 / c ** 2 - 1) * ortho
auto = precision.Choice("bf16", "auto: bf16, avx512_bf16 with the native bf16 GEMM: measured")
headroom = {c: precision.self_check(auto, {"reference": good, "fp32": good,
                                           "bf16": at_cosine(c)}.__getitem__)[0]
            for c in (0.99998, 0.99992)}
table = {"reference": good, "fp32": bad}
blas_wrong = precision.self_check(precision.Choice("fp32", "auto: fp32"), table.__getitem__)

def refusing(name):
    if name == "bf16":
        raise OSError("no bf16 kernel")
    return good
refused = precision.self_check(precision.Choice("bf16", "auto: bf16"), refusing)
print(json.dumps({
    "same_bits": bool(np.array_equal(ours, mlx_bits)),
    "emulated_err": float(np.abs(emulated - exact).max()),
    "reference_err": float(np.abs(reference - (a @ w.T + w[:, 0])).max()),
    "fallback": [bf16_falls_back[0].precision, bf16_falls_back[0].reason],
    "wrong_blas": [blas_wrong[0].precision, blas_wrong[0].reason],
    "refused": [refused[0].precision, refused[0].reason],
    "headroom": {str(c): [v.precision, v.reason] for c, v in headroom.items()},
}))
"""


def test_bf16_rounding_emulation_and_the_self_checks_verdicts(service_py):
    got = run_in_service_venv(service_py, ROUNDING_AND_CHECK)
    assert got["same_bits"]  # round to nearest even, as MLX (and oneMKL) round
    assert got["emulated_err"] < 1e-4 and got["reference_err"] < 1e-4
    assert got["fallback"][0] == "fp32"
    assert "bf16 failed the self-check" in got["fallback"][1]
    assert got["wrong_blas"][0] == "fp32"
    assert "SELF-CHECK FAILED" in got["wrong_blas"][1] and "computes wrong" in got["wrong_blas"][1]
    assert got["refused"][0] == "fp32"  # a bf16 GEMM that raises: fp32 serves, and says why
    assert "OSError: no bf16 kernel" in got["refused"][1]
    # auto keeps bf16 only with headroom over the 0.9999 parity bound (0.99995 on the probes)
    kept, near = got["headroom"]["0.99998"], got["headroom"]["0.99992"]
    assert kept[0] == "bf16" and "self-check min cos 0.99998" in kept[1]
    assert near[0] == "fp32" and near[1].startswith(
        "auto: fp32, bf16 measured faster but kept only min cos 0.99992") and \
        "under the 0.99995 auto asks" in near[1] and "self-check min cos 1.000000" in near[1]


def test_a_service_forced_to_bf16_says_so_and_keeps_parity(service_factory, reference):
    """MLX_PRECISION=bf16 through the real service: /info names the precision it runs (here,
    without bf16 units or oneMKL: emulated) with the self-check's figure, and the vectors keep
    parity with the sentence-transformers reference (assert_parity's minimum)."""
    from tests.service_support import assert_parity
    svc = service_factory(env={"MLX_PRECISION": "bf16"})
    info = svc.get("/info")[1]
    if info["device"] != "cpu":
        pytest.skip("the fast path is for the CPU device")
    assert info["precision"] in ("bf16", "bf16-emulated")
    assert info["precision_reason"].startswith(("bf16: MLX_PRECISION=bf16",
                                                "bf16 emulated: MLX_PRECISION=bf16"))
    assert "self-check min cos 0.9999" in info["precision_reason"]
    items = reference["items"]
    status, body = svc.post("/embed", {"input": [i["text"] for i in items]})
    assert status == 200
    assert_parity(items, body["embeddings"])


TABLE = r"""
import importlib, json
from mlx_service.models.architectures import ARCHITECTURES
from mlx_service.models.library import layers
out = {}
for name, arch in ARCHITECTURES.items():
    module = (layers(arch.library_module) if arch.library_module
              else importlib.import_module(arch.layers))
    builds = hasattr(module, "Model") and hasattr(module, "ModelArgs") if arch.library_module \
        else callable(getattr(module, "build", None))
    fast = None
    if arch.fast:
        mod, cls = arch.fast.split(":")
        fast_module = importlib.import_module(mod)
        fast = callable(getattr(fast_module, "supports")) and hasattr(fast_module, cls)
    out[name] = {"builds": builds, "fast": fast}
print(json.dumps(out))
"""


def test_every_table_entry_names_modules_that_exist(service_py):
    """models/architectures.py: each entry's layers build, and its fast pass is there."""
    table = run_in_service_venv(service_py, TABLE)
    assert set(table) >= {"bert", "xlm_roberta", "modernbert", "qwen3", "mpnet", "distilbert",
                          "gemma3_text", "qwen2", "mistral"}
    assert all(entry["builds"] for entry in table.values()), table
    assert all(entry["fast"] in (True, None) for entry in table.values()), table
    assert table["gemma3_text"]["fast"] is True and table["mpnet"]["fast"] is True
