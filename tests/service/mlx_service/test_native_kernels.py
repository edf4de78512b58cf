"""The native exp/GELU/SiLU kernels (mlx_service/kernels/native_math.py, built from
mlx_service/kernels/native/fastmath.c with the machine's compiler and libmvec) compute what the
numpy kernels compute, a machine without them falls back to numpy and says so, and /info names
which ran. Run in the service's venv (numpy, MLX)."""
from __future__ import annotations

import sys

import pytest

from tests.service.mlx_service.test_service_cpu_fast import run_in_service_venv

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="libmvec and the CPU fast path are Linux's")

SAME_NUMBERS = r"""
import json, os, tempfile
import numpy as np
from mlx_service.kernels import native_math
from mlx_service.models.fast_bert import exp_real_rows_, gelu_real_rows_
from mlx_service.models.fast_qwen3 import future_of, swiglu_rows_
kernels, said = native_math.load(True)
rng = np.random.default_rng(20261203)
out = {"said": said}
scores = (rng.standard_normal((3, 4, 40, 40)) * 4).astype(np.float32)
lengths = np.array([40, 23, 1])
for name, hidden in (("plain", None), ("causal", future_of)):
    a, b = scores.copy(), scores.copy()
    sa = exp_real_rows_(a, lengths, hidden)
    sb = exp_real_rows_(b, lengths, hidden, kernels)
    out[name] = [float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-30))),
                 float(np.max(np.abs(sa - sb) / sa))]
act = (rng.standard_normal((3, 40, 96)) * 3).astype(np.float32)
a, b = act.copy(), act.copy()
gelu_real_rows_(a, lengths)
gelu_real_rows_(b, lengths, kernels)
out["gelu"] = float(np.max(np.abs(a - b)))
gate_up = (rng.standard_normal((50, 64)) * 3).astype(np.float32)
a = swiglu_rows_(gate_up.copy(), 32)
b = swiglu_rows_(gate_up.copy(), 32, kernels)
out["silu"] = float(np.max(np.abs(a - b)))
# A machine without a compiler: numpy's kernels, and the reason.
none, why = native_math.load(True, dict(os.environ, CC="/bin/false",
                                        MLX_NATIVE_DIR=tempfile.mkdtemp()))
out["no_compiler"] = [none is None, why]
out["off"] = list(native_math.load(False))[1]
print(json.dumps(out))
"""


def test_native_kernels_compute_what_numpy_computes(service_py):
    got = run_in_service_venv(service_py, SAME_NUMBERS)
    assert got["said"] == "native (libmvec)", got["said"]  # CI's bootstrap installs gcc, libc6-dev
    for name in ("plain", "causal"):
        values, sums = got[name]
        assert values < 1e-5 and sums < 1e-5, (name, got[name])
    assert got["gelu"] < 2e-6 and got["silu"] < 1e-5, got
    gone, why = got["no_compiler"]
    assert gone and why.startswith("numpy (native kernels unavailable: ") and "false" in why
    assert got["off"] == "numpy (MLX_NATIVE_KERNELS=0)"


def test_info_names_the_kernels_that_run(service, service_factory):
    status, info = service.get("/info")
    assert status == 200 and info["model_info"]["kernels"] == "native (libmvec)", info
    numpy_only = service_factory(env={"MLX_NATIVE_KERNELS": "0"})
    status, info = numpy_only.get("/info")
    assert info["model_info"]["kernels"] == "numpy (MLX_NATIVE_KERNELS=0)", info
    # the same vectors either way
    body = {"input": ["the kernels differ, the vectors do not", "a second text"]}
    _, a = service.post("/embed", body)
    _, b = numpy_only.post("/embed", body)
    for x, y in zip(a["embeddings"], b["embeddings"]):
        assert sum(p * q for p, q in zip(x, y)) > 0.99999
