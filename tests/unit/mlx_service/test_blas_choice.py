"""MLX_BLAS=auto's decision (mlx_service.kernels.blas.decide): pure, so every case is a table
row."""
from __future__ import annotations

import pytest

from mlx_service.kernels.blas import BlasError, Candidate, decide
from mlx_service.kernels.blas_cache import CACHE_SCHEMA, cache_key, cached_probes

OPENBLAS = Candidate("openblas", "/usr/lib/libopenblas.so.0", "openblas 0.3.21")
MKL = Candidate("mkl", "/venv/lib/libmkl_rt.so.3", "mkl 2026.2")
REFERENCE = Candidate("reference", None, "mlx 0.32.4")
ALL = {c.name: c for c in (OPENBLAS, MKL, REFERENCE)}
ONLY_REFERENCE = {"reference": REFERENCE}


def figures(**gflops):
    return {name: {"gflops": value} for name, value in gflops.items()}


def test_auto_asks_for_a_probe_of_every_library_it_has_no_figure_for():
    first = decide("auto", "linux", ALL, {}, figures(reference=5.0))
    assert first.to_probe == ("openblas", "mkl")
    assert decide("auto", "linux", ALL, {}, figures(reference=5, openblas=70, mkl=60)).to_probe == ()


@pytest.mark.parametrize("gflops, winner", [
    (dict(openblas=330, mkl=390, reference=5), "mkl"),       # an Intel Xeon
    (dict(openblas=70, mkl=64, reference=5), "openblas"),    # an AMD EPYC
    (dict(openblas=70, mkl=70, reference=5), "openblas"),    # a tie: no extra package wins
])
def test_auto_takes_the_fastest_measured(gflops, winner):
    decision = decide("auto", "linux", ALL, figures(**gflops), {})
    assert decision.library == winner and decision.path == ALL[winner].path
    assert "measured now" in decision.reason and winner in decision.reason
    assert decision.gflops == {name: float(value) for name, value in gflops.items()}


def test_fresh_probes_win_over_the_cache_and_the_reason_says_which():
    cached = figures(openblas=70, mkl=90, reference=5)
    assert decide("auto", "linux", ALL, {}, cached).reason.startswith(
        "auto: fastest on the model's matmul shapes (cached probe): mkl 90")
    assert decide("auto", "linux", ALL, figures(mkl=50), cached).library == "openblas"


def test_a_failed_probe_is_passed_over_and_reported():
    results = {"mkl": {"error": "libiomp5.so: cannot open"}, **figures(openblas=70, reference=5)}
    decision = decide("auto", "linux", ALL, results, {})
    assert decision.library == "openblas"
    assert decision.gflops["mkl"].startswith("failed: libiomp5.so")
    everything_failed = {n: {"error": "boom"} for n in ALL}
    assert decide("auto", "linux", ALL, everything_failed, {}).library == "reference"


def test_no_probe_when_there_is_nothing_to_choose_from():
    decision = decide("auto", "linux", ONLY_REFERENCE, {}, {})
    assert decision.library == "reference" and decision.to_probe == ()
    assert "libopenblas0-pthread" in decision.reason


def test_a_blas_already_preloaded_by_the_user_is_kept():
    decision = decide("auto", "linux", ALL, {}, {}, preloaded="mkl")
    assert (decision.library, decision.path, decision.to_probe) == ("mkl", None, ())


def test_a_forced_library_needs_no_probe_and_must_exist():
    assert decide("mkl", "linux", ALL, {}, {}).library == "mkl"
    assert decide("reference", "linux", ALL, {}, figures(openblas=70)).reason == "MLX_BLAS=reference"
    with pytest.raises(BlasError, match="inv mlx install --blas mkl"):
        decide("mkl", "linux", {"openblas": OPENBLAS, "reference": REFERENCE}, {}, {})
    with pytest.raises(BlasError, match="libopenblas0-pthread"):
        decide("openblas", "linux", ONLY_REFERENCE, {}, {})


def test_other_platforms_have_no_choice():
    assert decide("auto", "darwin", ALL, {}, {}).library == "accelerate"
    assert decide("mkl", "darwin", ONLY_REFERENCE, {}, {}).to_probe == ()
    assert decide("auto", "win32", ALL, {}, {}).library == "reference"


def test_the_cache_holds_per_machine_and_per_library_version():
    machine = "AMD EPYC flags:abc cores:2"
    cache = {"schema": CACHE_SCHEMA, "entries": {
        cache_key(machine, OPENBLAS): {"gflops": 70.0},
        cache_key(machine, MKL): {"gflops": 60.0},
    }}
    assert cached_probes(cache, machine, ALL) == figures(openblas=70.0, mkl=60.0)
    upgraded = {**ALL, "mkl": Candidate("mkl", MKL.path, "mkl 2027.0")}
    assert cached_probes(cache, machine, upgraded) == figures(openblas=70.0)
    assert cached_probes(cache, "Intel Xeon flags:def cores:2", ALL) == {}
    assert cached_probes({"schema": 0, "entries": cache["entries"]}, machine, ALL) == {}


# What precision.wants_onemkl says on a CPU with bf16 units, oneMKL installed, auto precision.
PREFER_MKL = "auto: mkl for its bf16 GEMM (this CPU has avx512_bf16, MLX_PRECISION=auto)"


def test_bf16_units_take_onemkl_only_after_its_probe_loaded_it_and_bf16_measured_faster():
    unmeasured = decide("auto", "linux", ALL, {}, figures(reference=5), prefer_mkl=PREFER_MKL)
    assert unmeasured.to_probe == ("openblas", "mkl")
    # A cached probe from before the bf16 figure: oneMKL is probed again.
    old = decide("auto", "linux", ALL, {}, figures(openblas=70, mkl=60, reference=5),
                 prefer_mkl=PREFER_MKL)
    assert old.to_probe == ("mkl",)
    results = {**figures(openblas=70, reference=5), "mkl": {"gflops": 60, "bf16_gflops": 140}}
    taken = decide("auto", "linux", ALL, results, {}, prefer_mkl=PREFER_MKL)
    assert taken.library == "mkl" and taken.reason.startswith(PREFER_MKL)
    assert "computed right: oneMKL's bf16 GEMM 140 GFLOPS vs openblas's float32 70" in taken.reason
    assert taken.gflops["mkl_bf16"] == 140


def test_onemkl_is_not_kept_for_a_bf16_that_measured_slower():
    """Issue 27's Zen 4: bf16 not faster than the fastest float32 library by the margin ->
    that float32 library, and the reason says why oneMKL was not kept."""
    results = {**figures(openblas=95, reference=5), "mkl": {"gflops": 92, "bf16_gflops": 100}}
    decision = decide("auto", "linux", ALL, results, {}, prefer_mkl=PREFER_MKL)
    assert decision.library == "openblas"
    assert decision.reason.endswith("not kept for bf16: oneMKL's bf16 GEMM 100 GFLOPS vs "
                                    "openblas's float32 95, under 1.15x")


def test_onemkl_is_not_kept_where_the_native_bf16_gemm_beats_its_bf16():
    """oneMKL's bf16 beats float32 by the margin but not the service's own bf16 GEMM (a Zen 4
    or Zen 5): the float32 library stays, and the reason gives the native figure; the native
    figure is reported whether or not oneMKL is installed."""
    results = {"openblas": {"gflops": 95, "native_bf16_gflops": 460},
               "mkl": {"gflops": 92, "bf16_gflops": 180, "native_bf16_gflops": 455},
               "reference": {"gflops": 5}}
    decision = decide("auto", "linux", ALL, results, {}, prefer_mkl=PREFER_MKL)
    assert decision.library == "openblas" and decision.gflops["native_bf16"] == 460
    assert decision.reason.endswith("not kept for bf16: oneMKL's bf16 GEMM 180 GFLOPS vs the "
                                    "native bf16 GEMM's 460, under 1.15x")
    amx = {**results, "mkl": {"gflops": 92, "bf16_gflops": 1600}}
    assert decide("auto", "linux", ALL, amx, {}, prefer_mkl=PREFER_MKL).library == "mkl"
    no_mkl = {k: v for k, v in results.items() if k != "mkl"}
    alone = decide("auto", "linux", {k: v for k, v in ALL.items() if k != "mkl"}, no_mkl, {})
    assert alone.library == "openblas" and alone.gflops["native_bf16"] == 460


ZEN3 = "flags\t\t: fpu sse2 avx fma avx2 bmi2 sha_ni vaes\n"
ZEN4 = "flags\t\t: fpu avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
SPR = "flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"


@pytest.mark.parametrize("cpuinfo, mkl, winner", [
    # Zen 3: no bf16 units, oneMKL's bf16 figure is not even weighed: fastest float32
    (ZEN3, {"gflops": 60, "bf16_gflops": 300}, "openblas"),
    # Zen 4 (AVX512_BF16), the slow path of issue 27: float32 wins
    (ZEN4, {"gflops": 63, "bf16_gflops": 80}, "openblas"),
    # Zen 4, the packed path: bf16 1.9x OpenBLAS's float32
    (ZEN4, {"gflops": 63, "bf16_gflops": 180}, "mkl"),
    # Sapphire Rapids (AMX): about 1,600 against 364 (DESIGN.md)
    (SPR, {"gflops": 364, "bf16_gflops": 1600}, "mkl"),
])
def test_each_cpu_kinds_flags_and_figures(cpuinfo, mkl, winner):
    from mlx_service.kernels.precision import cpu_bf16_units, wants_onemkl
    prefer = wants_onemkl("auto", cpu_bf16_units(cpuinfo), True)
    results = {**figures(openblas=95, reference=5), "mkl": mkl}
    assert decide("auto", "linux", ALL, results, {}, prefer_mkl=prefer).library == winner


def test_bf16_units_pass_over_a_onemkl_that_fails_its_probe():
    # The fresh-machine failure of issue 27: a broken libmkl_rt was chosen unprobed.
    results = {"mkl": {"error": "not an ELF file"}, **figures(openblas=70, reference=5)}
    decision = decide("auto", "linux", ALL, results, {}, prefer_mkl=PREFER_MKL)
    assert decision.library == "openblas"
    assert decision.gflops["mkl"].startswith("failed: not an ELF")


def test_the_reason_names_the_kernels_the_winner_was_measured_with():
    """A forced OpenBLAS core type (this machine's OPENBLAS_CORETYPE=Haswell on a Zen 5 with
    AVX-512) halves its speed: the reason says which kernels the figure is for."""
    probes = figures(openblas=114, mkl=96, reference=5)
    probes["openblas"]["kernels"] = "Haswell kernels, OPENBLAS_CORETYPE=Haswell"
    decision = decide("auto", "linux", ALL, probes, {})
    assert decision.library == "openblas"
    assert "openblas (Haswell kernels, OPENBLAS_CORETYPE=Haswell) 114 GFLOPS" in decision.reason
    plain = decide("auto", "linux", ALL, figures(openblas=114, mkl=96, reference=5), {})
    assert "): openblas 114 GFLOPS" in plain.reason
