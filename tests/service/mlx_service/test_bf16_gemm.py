"""The bf16 path's parts (mlx_service/kernels/gemm.py's Bf16Gemm, native_math's round_bf16): the
native rounding gives numpy's (and MLX's) bits, and oneMKL's packed bf16 GEMM gives the exact
product of the rounded operands to float32 accumulation. oneMKL is loaded by its file here
(blas.find_mkl), so the GEMM is checked wherever the venv has it, whatever the CPU (oneMKL
runs bf16 without the units too, slowly); where it has not, the check is that nothing claims
a bf16 GEMM and that the emulated path gives the same exact product. Run in the service's venv."""
from __future__ import annotations

import sys

import pytest

from tests.service.mlx_service.test_service_cpu_fast import run_in_service_venv

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="oneMKL's wheel and the native kernels are Linux's here")

PACKED_GEMM = r"""
import ctypes, json, os
import numpy as np
import mlx.core as mx
from mlx_service.kernels import blas, gemm, native_math

kernels, said = native_math.load(True)
rng = np.random.default_rng(27)
out = {"native": kernels is not None}
x = np.concatenate([rng.standard_normal(50000).astype(np.float32) * 30,
                    np.array([0, -0.0, 1e-40, 3.3895314e38, 1.00390625, 1.01171875], np.float32)])
x = x.reshape(-1, 2)
if kernels is not None:
    bits = np.empty(x.shape, np.uint16)
    kernels.round_bf16(x, bits)
    wide = np.ascontiguousarray(np.concatenate([x, x], axis=1))  # strided rows: a view
    strided = np.empty(x.shape, np.uint16)
    kernels.round_bf16(wide[:, 2:], strided)
    out["native_same_bits"] = bool(np.array_equal(bits, gemm.to_bf16_bits(x))
                                   and np.array_equal(strided, bits))

rounded = lambda v: (gemm.to_bf16_bits(v).astype(np.uint32) << 16).view(np.float32)
w = rng.standard_normal((200, 96)).astype(np.float32)
b = rng.standard_normal(200).astype(np.float32)
exact = lambda a: rounded(a).astype(np.float64) @ rounded(w).astype(np.float64).T + b
scale = lambda a: float(np.abs(exact(a)).max())

mkl = blas.find_mkl(os.environ)
out["mkl"] = mkl is not None
out["unloaded_claims_bf16"] = gemm.bf16_gemm_function() is not None and \
    not os.environ.get("LD_PRELOAD")
if mkl is not None:
    fn = gemm.bf16_gemm_function(kernels, ctypes.CDLL(mkl))
    out["packs"] = fn.packs
    packed = fn.prepare(w, rows=64)          # packed for 64 rows, used for 1, 7 and 300
    errs = []
    for m in (1, 7, 300):
        a = rng.standard_normal((m, 96)).astype(np.float32)
        got = fn(a, packed, 200, b)
        errs.append(float(np.abs(got - exact(a)).max()) / scale(a))
    unpacked = fn(a, gemm.to_bf16_bits(w), 200, None)
    errs.append(float(np.abs(unpacked + b - exact(a)).max()) / scale(a))
    out["mkl_rel_err"] = max(errs)
    # The Linear as the fast path calls it, on an MLX array's own buffer.
    lin = gemm.Linear(mx.array(w), mx.array(b), "bf16", fn)
    out["linear_rel_err"] = float(np.abs(np.array(lin(mx.array(a))) - exact(a)).max()) / scale(a)
from mlx_service.kernels import native_bf16
own, why = native_bf16.load(True)
out["native_gemm"] = own is not None
out["native_gemm_why"] = why
if own is not None:  # odd shapes: partial tiles, odd k, one row, strided rows, no bias
    errs = []
    for m, n, k in ((1, 1, 1), (7, 17, 3), (9, 49, 385), (300, 200, 96), (97, 1000, 333)):
        wo = rng.standard_normal((n, k)).astype(np.float32)
        bo = rng.standard_normal(n).astype(np.float32)
        xo = rng.standard_normal((m, k)).astype(np.float32)
        want = rounded(xo).astype(np.float64) @ rounded(wo).astype(np.float64).T
        packed = own.prepare(wo)
        wide = np.ascontiguousarray(np.concatenate([xo, xo], axis=1))[:, k:]  # a view
        for got, ref in ((own(xo, packed, n, bo), want + bo), (own(wide, packed, n, None), want)):
            errs.append(float(np.abs(got - ref).max() / np.abs(ref).max()))
    out["native_gemm_rel_err"] = max(errs)
    try:  # a weight packed for another k is refused, not read past its end
        own(rng.standard_normal((3, 97)).astype(np.float32), packed, 1000, None)
        out["native_gemm_refuses_mismatch"] = False
    except ValueError:
        out["native_gemm_refuses_mismatch"] = True
    lin = gemm.Linear(mx.array(w), mx.array(b), "bf16", own)
    a = rng.standard_normal((300, 96)).astype(np.float32)
    out["native_linear_rel_err"] = float(np.abs(np.array(lin(mx.array(a))) - exact(a)).max()) \
        / scale(a)
a = rng.standard_normal((9, 96)).astype(np.float32)
emulated = gemm.Linear(mx.array(w), mx.array(b), "bf16-emulated")
out["emulated_rel_err"] = float(np.abs(np.array(emulated(mx.array(a))) - exact(a)).max()) / scale(a)
fp32 = np.array(gemm.Linear(mx.array(w), mx.array(b), "fp32")(mx.array(a)))
out["bf16_vs_fp32_rel"] = float(np.abs(exact(a) - fp32).max()) / scale(a)
print(json.dumps(out))
"""


def test_packed_bf16_gemm_gives_the_exact_product_of_the_rounded_operands(service_py):
    got = run_in_service_venv(service_py, PACKED_GEMM)
    if got["native"]:
        assert got["native_same_bits"]  # one native pass, numpy's round to nearest even
    # bf16 is not float32: the rounding shows (so the comparisons below could fail) ...
    assert 1e-4 < got["bf16_vs_fp32_rel"] < 2e-2
    # ... and the emulated path (operands rounded, float32 GEMM) gives the exact product.
    assert got["emulated_rel_err"] < 1e-5
    if got["mkl"]:
        assert got["packs"]  # oneMKL 2021+ exports the pack API
        assert got["mkl_rel_err"] < 1e-5 and got["linear_rel_err"] < 1e-5
    else:  # no oneMKL in this venv: nothing may claim a bf16 GEMM
        assert not got["unloaded_claims_bf16"]


def test_native_bf16_gemm_gives_the_exact_product_of_the_rounded_operands(service_py):
    """The native bf16 GEMM (native_bf16.py) on odd shapes: partial tiles of rows and columns,
    odd k (zero-padded pairs), one row, strided rows, with and without bias. Built where the
    CPU has AVX512_BF16; elsewhere the test checks it is not claimed, and says why."""
    from mlx_service.kernels.native_bf16 import compile_flags
    import platform

    from mlx_service.kernels.cpu_info import cpu_flags
    got = run_in_service_venv(service_py, PACKED_GEMM)
    buildable = compile_flags(platform.system(), platform.machine(), cpu_flags()) is not None
    assert got["native_gemm"] == buildable, got["native_gemm_why"]
    if not buildable:
        pytest.skip(f"no AVX512_BF16 here: {got['native_gemm_why']}")
    assert got["native_gemm_rel_err"] < 1e-5 and got["native_linear_rel_err"] < 1e-5
    assert got["native_gemm_refuses_mismatch"]


def test_auto_precision_through_the_service_is_measured_and_keeps_parity(
        service_factory, reference, service_py, tmp_path):
    """MLX_PRECISION=auto through the real service, with a fresh precision cache. On a CPU
    with bf16 units and a bf16 GEMM (the native one where it has AVX512_BF16; oneMKL, forced
    here where the venv has it), /info's reason gives the measured fp32 and bf16 figures and
    names what they chose; elsewhere it says why nothing was measured. The vectors keep parity with sentence-transformers either way."""
    import re

    from mlx_service.kernels import blas, precision
    from tests.service_support import assert_parity
    mkl = blas.find_mkl({}, str(service_py.parent.parent))
    env = {"MLX_PRECISION": "auto", "MLX_PRECISION_CACHE": str(tmp_path / "probe.json")}
    if mkl:
        env["MLX_BLAS"] = "mkl"
    svc = service_factory(env=env)
    info = svc.get("/info")[1]
    if info["device"] != "cpu":
        pytest.skip("the fast path is for the CPU device")
    reason = info["precision_reason"]
    import platform

    from mlx_service.kernels import native_bf16
    from mlx_service.kernels.cpu_info import cpu_flags
    own = native_bf16.compile_flags(platform.system(), platform.machine(), cpu_flags())
    if (mkl or own) and precision.cpu_bf16_units():
        figures = re.search(r"measured ([\d.]+) ms bf16 vs ([\d.]+) ms fp32 \(([\d.]+)x, "
                            r"1.15x needed; measured now(, oneMKL's bf16 [\d.]+ ms)?\)", reason)
        assert figures, reason
        bf16_ms, fp32_ms, _ = map(float, figures.groups()[:3])
        want = "bf16" if fp32_ms / bf16_ms >= precision.BF16_MARGIN else "fp32"
        assert info["precision"] == want, reason
        assert ("the native bf16 GEMM" in reason) or ("oneMKL's bf16 GEMM" in reason), reason
        assert (tmp_path / "probe.json").exists()  # cached for the next start
    else:
        assert info["precision"] == "fp32"
        assert ("no bf16 units" in reason if not precision.cpu_bf16_units()
                else "no bf16 GEMM is loaded" in reason), reason
        assert not (tmp_path / "probe.json").exists()  # nothing to measure
    assert "self-check min cos" in reason
    items = reference["items"]
    status, body = svc.post("/embed", {"input": [i["text"] for i in items]})
    assert status == 200
    assert_parity(items, body["embeddings"])
