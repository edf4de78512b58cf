"""MLX_PRECISION: which precision the fast path's matmuls take, and the reason it says
(mlx_service/kernels/precision.py's pure parts; the self-check runs in tests/service)."""
from __future__ import annotations

import pytest

from mlx_service.config import ConfigError, load_config
from mlx_service.kernels import precision

ZEN3_FLAGS = ("flags\t\t: fpu vme sse sse2 ssse3 fma avx f16c avx2 bmi1 bmi2 sha_ni vaes\n")
ZEN4_FLAGS = ("flags\t\t: fpu avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n")
SPR_FLAGS = ("flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n")


@pytest.mark.parametrize("cpuinfo,units", [
    (ZEN3_FLAGS, ()), (ZEN4_FLAGS, ("avx512_bf16",)), (SPR_FLAGS, ("amx_bf16", "avx512_bf16")),
    ("processor\t: 0\n", ()),  # no flags line (not x86): no units
])
def test_bf16_units_are_read_from_cpuinfo_flags(cpuinfo, units):
    assert precision.cpu_bf16_units(cpuinfo) == units


def test_auto_on_a_cpu_without_bf16_units_is_fp32_and_says_why():
    choice = precision.decide("auto", True, (), library=True)
    assert choice.precision == "fp32" and choice.check
    assert choice.reason == "auto: fp32, this CPU has no bf16 units (AMX-BF16, AVX512_BF16)"


def test_auto_with_units_but_no_library_names_the_install():
    choice = precision.decide("auto", True, ("avx512_bf16",), library=False)
    assert choice.precision == "fp32"
    assert "avx512_bf16" in choice.reason and "inv mlx install --blas mkl" in choice.reason


def test_an_installed_onemkl_the_blas_probe_left_out_is_reported_with_its_figures():
    """oneMKL installed, but MLX_BLAS=auto did not load it (its bf16 GEMM measured slower than
    float32): the reason says so, with the figures, instead of asking for the install."""
    from mlx_service.kernels.blas import Candidate, decide, not_kept_for_bf16
    candidates = {"openblas": Candidate("openblas", "/lib/libopenblas.so.0"),
                  "mkl": Candidate("mkl", "/venv/lib/libmkl_rt.so.2"),
                  "reference": Candidate("reference", None)}
    probes = {"openblas": {"gflops": 116.0}, "mkl": {"gflops": 96.0, "bf16_gflops": 99.0},
              "reference": {"gflops": 5.0}}
    blas = decide("auto", "linux", candidates, probes, {}, prefer_mkl="auto: mkl for bf16")
    assert blas.library == "openblas"
    not_kept = not_kept_for_bf16(blas.reason)
    assert not_kept == "oneMKL's bf16 GEMM 99 GFLOPS vs openblas's float32 116, under 1.15x"
    choice = precision.decide("auto", True, ("avx512_bf16",), library=False, not_kept=not_kept)
    assert choice.precision == "fp32" and "inv mlx install" not in choice.reason
    assert choice.reason.endswith(f"did not keep oneMKL for bf16: {not_kept}")
    assert not_kept_for_bf16("auto: fastest on the model's matmul shapes: openblas 116") is None


def test_auto_with_units_and_onemkl_asks_for_a_measurement_first():
    choice = precision.decide("auto", True, ("amx_bf16", "avx512_bf16"), library=True)
    assert choice.measure and choice.precision == "fp32"


def test_auto_takes_bf16_only_where_it_measured_faster_by_the_margin():
    faster = precision.decide("auto", True, ("avx512_bf16",), True, precision.Timing(6.6, 3.3))
    assert (faster.precision, faster.check, faster.measure) == ("bf16", True, False)
    assert faster.reason == ("auto: bf16, avx512_bf16 with oneMKL's bf16 GEMM: the model's "
                             "layer measured 3.30 ms bf16 vs 6.60 ms fp32 (2.00x, 1.15x "
                             "needed; measured now)")
    tie = precision.decide("auto", True, ("avx512_bf16",), True,
                           precision.Timing(6.0, 5.5, "cached probe"))
    assert tie.precision == "fp32"
    assert tie.reason.startswith("auto: fp32, bf16 did not pay on this CPU (avx512_bf16")
    assert "5.50 ms bf16 vs 6.00 ms fp32 (1.09x, 1.15x needed; cached probe)" in tie.reason


@pytest.mark.parametrize("cpuinfo, timing, want", [
    (ZEN3_FLAGS, precision.Timing(6.0, 1.0), "fp32"),  # no units: no bf16 whatever a stub says
    (ZEN4_FLAGS, precision.Timing(6.6, 7.9), "fp32"),  # issue 27's slow path: slower
    (ZEN4_FLAGS, precision.Timing(6.6, 3.6), "bf16"),  # the packed path: 1.8x
    (SPR_FLAGS, precision.Timing(6.0, 1.4), "bf16"),   # AMX
])
def test_each_cpu_kinds_flags_and_measured_times(cpuinfo, timing, want):
    units = precision.cpu_bf16_units(cpuinfo)
    first = precision.decide("auto", True, units, True)
    assert first.measure == bool(units)  # only a CPU with units is measured
    final = precision.decide("auto", True, units, True, timing) if first.measure else first
    assert final.precision == want


def test_forced_bf16_without_units_runs_emulated_and_says_it_is_not_faster():
    choice = precision.decide("bf16", True, (), library=False)
    assert choice.precision == "bf16-emulated"
    assert "no bf16 units" in choice.reason and "not its speed" in choice.reason


def test_fp32_forced_and_models_without_a_fast_path():
    assert precision.decide("fp32", True, ("amx_bf16",), True).precision == "fp32"
    slow = precision.decide("bf16", False, ("amx_bf16",), True)
    assert (slow.precision, slow.check) == ("fp32", False)
    assert "no bf16 path" in slow.reason


def test_mlx_precision_setting():
    assert load_config([], {}).precision == "auto"
    assert load_config([], {"MLX_PRECISION": " BF16 "}).precision == "bf16"
    with pytest.raises(ConfigError, match=r"MLX_PRECISION='fp16' is not one of auto, fp32, bf16"):
        load_config([], {"MLX_PRECISION": "fp16"})


def test_inv_mlx_install_says_what_was_measured_on_a_cpu_with_units():
    from tasks.host.service_venv import bf16_hint
    assert bf16_hint((), ZEN3_FLAGS) is None  # nothing to gain: no hint
    hint = bf16_hint((), ZEN4_FLAGS)
    assert "avx512_bf16" in hint and "inv mlx install --blas mkl" in hint and "1 GB" in hint
    assert "measure whether it pays" in hint and "1.6" not in hint  # no promised figure
    lost = {"library": "openblas", "reason": "auto: fastest ...; not kept for bf16: ...",
            "gflops": {"openblas": 95.2, "mkl": 91.0, "mkl_bf16": 80.4}}
    hint = bf16_hint(("mkl",), ZEN4_FLAGS, lost)
    assert "oneMKL's bf16 GEMM (80 GFLOPS) did not beat openblas's float32 (95.2 GFLOPS)" in hint
    assert "runs fp32 on openblas" in hint
    won = {"library": "mkl", "gflops": {"openblas": 95.2, "mkl": 91.0, "mkl_bf16": 180.0},
           "reason": "auto: mkl for its bf16 GEMM (...); its probe loaded it and computed "
                     "right: oneMKL's bf16 GEMM 180 GFLOPS vs openblas's float32 95"}
    hint = bf16_hint(("mkl",), SPR_FLAGS, won)
    assert "measured: oneMKL's bf16 GEMM 180 GFLOPS vs openblas's float32 95" in hint
    assert "MLX_PRECISION=auto times the model's own layer" in hint
    assert "not measured" in bf16_hint(("mkl",), SPR_FLAGS, None)


def test_inv_mlx_install_gives_the_native_bf16_gemms_measured_figure():
    """Without oneMKL, on a CPU with AVX512_BF16: the service's own bf16 GEMM was measured
    (MLX_BLAS=auto's probe), so the hint gives its figure, not an install to run; on AMX it
    adds that oneMKL may be faster still."""
    from tasks.host.service_venv import bf16_hint
    measured = {"library": "openblas", "reason": "auto: fastest ...",
                "gflops": {"openblas": 114.0, "reference": 5.0, "native_bf16": 462.0}}
    hint = bf16_hint((), ZEN4_FLAGS, measured)
    assert "measured here: the service's own bf16 GEMM 462 GFLOPS vs openblas's float32 " \
           "114.0" in hint and "inv mlx install --blas mkl" not in hint
    assert "inv mlx install --blas mkl" in bf16_hint((), SPR_FLAGS, measured)  # AMX
    lost = {**measured, "gflops": {**measured["gflops"], "mkl": 91.0, "mkl_bf16": 180.0}}
    hint = bf16_hint(("mkl",), ZEN4_FLAGS, lost)
    assert "oneMKL's bf16 GEMM (180 GFLOPS) did not beat the service's own (462 GFLOPS)" in hint


def test_blas_auto_takes_onemkl_on_a_bf16_cpu_unless_fp32_is_asked():
    assert precision.wants_onemkl("auto", ("avx512_bf16",), True).startswith(
        "auto: mkl for its bf16 GEMM (this CPU has avx512_bf16")
    assert precision.wants_onemkl("fp32", ("avx512_bf16",), True) is None
    assert precision.wants_onemkl("auto", (), True) is None        # Zen 3: the probe decides
    assert precision.wants_onemkl("bf16", ("amx_bf16",), False) is None  # nothing to take


def test_the_reason_names_the_bf16_gemm_that_won_and_the_others_figures():
    from mlx_service.kernels.precision_probe import timing_from
    timing = timing_from({"fp32": 16.63, "native": 4.97, "oneMKL": 9.1})
    assert (timing.bf16_gemm, timing.bf16_ms, timing.others) == ("native", 4.97,
                                                                  (("oneMKL", 9.1),))
    choice = precision.decide("auto", True, ("avx512_bf16",), "oneMKL", timing)
    assert choice.precision == "bf16"
    assert choice.reason == ("auto: bf16, avx512_bf16 with the native bf16 GEMM: the model's "
                             "layer measured 4.97 ms bf16 vs 16.63 ms fp32 (3.35x, 1.15x "
                             "needed; measured now, oneMKL's bf16 9.10 ms)")
    amx = timing_from({"fp32": 6.0, "native": 3.0, "oneMKL": 1.2}, "cached probe")
    assert amx.bf16_gemm == "oneMKL" and amx.source == "cached probe"
    forced = precision.decide("bf16", True, ("avx512_bf16",), "native")
    assert forced.reason == "bf16: MLX_PRECISION=bf16, avx512_bf16 with the native bf16 GEMM"


def test_a_scorer_stays_fp32_under_auto_and_takes_bf16_only_when_asked():
    """Reranker and classifier scores are compared as numbers (to 1e-3 with
    sentence-transformers'); bf16 moved the tiny rerankers' by 0.004-0.02."""
    auto = precision.decide("auto", True, ("avx512_bf16",), "native", scores=True)
    assert (auto.precision, auto.measure, auto.check) == ("fp32", False, True)
    assert auto.reason.startswith("auto: fp32, a scorer's scores must equal the reference's")
    faster = precision.Timing(16.6, 5.0, bf16_gemm="native")
    assert precision.decide("auto", True, ("avx512_bf16",), "native", faster,
                            scores=True).precision == "fp32"
    asked = precision.decide("bf16", True, ("avx512_bf16",), "native", scores=True)
    assert asked.precision == "bf16"
    # an embedding model with the same figures takes bf16
    assert precision.decide("auto", True, ("avx512_bf16",), "native", faster).precision == "bf16"
