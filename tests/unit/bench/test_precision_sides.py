"""inv bench's fp32 and bf16 side by side (tasks/bench/precision_sides.py): which CPUs get
it, and the table it prints from measured figures."""
from __future__ import annotations

from mlx_service.kernels.precision import cpu_bf16_units
from tasks.bench import precision_sides as sides

ZEN3 = "flags\t\t: fpu sse2 avx fma avx2 bmi2\n"
ZEN4 = "flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
SPR = "flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
MKL = "venv/lib/libmkl_rt.so.2"


def test_only_a_cpu_with_bf16_units_and_onemkl_runs_both_paths():
    none, why = sides.wanted_sides(cpu_bf16_units(ZEN3), MKL)
    assert none == () and "no bf16 units" in why
    none, why = sides.wanted_sides(cpu_bf16_units(ZEN4), None)
    assert none == () and "avx512_bf16" in why and "--blas mkl" in why
    both, why = sides.wanted_sides(cpu_bf16_units(SPR), MKL)
    assert [name for name, _ in both] == ["fp32", "bf16"]
    assert dict(both)["bf16"] == {"MLX_PRECISION": "bf16", "MLX_BLAS": "mkl"}
    assert dict(both)["fp32"] == {"MLX_PRECISION": "fp32"}
    assert "amx_bf16/avx512_bf16" in why


def test_the_native_bf16_gemm_runs_both_paths_without_onemkl():
    both, why = sides.wanted_sides(cpu_bf16_units(ZEN4), None, native=True)
    assert dict(both) == {"fp32": {"MLX_PRECISION": "fp32"}, "bf16": {"MLX_PRECISION": "bf16"}}
    assert why == "this CPU has avx512_bf16, the native bf16 GEMM"
    none, _ = sides.wanted_sides(cpu_bf16_units(ZEN3), MKL, native=False)
    assert none == ()


def test_the_table_names_the_cpu_and_gives_each_path_against_the_other_and_the_peer():
    started = {"fp32": (None, None, {"precision": "fp32", "blas": "openblas",
                                     "precision_reason": "fp32: MLX_PRECISION=fp32"}),
               "bf16": (None, None, {"precision": "bf16", "blas": "mkl",
                                     "precision_reason": "bf16: MLX_PRECISION=bf16"})}
    shapes = {"workloads": [{"name": "corpus", "http-fp32": 80.0, "http-bf16": 100.0,
                             "peer": 40.0, "http": 100.0}]}
    doc = sides.describe("this CPU has avx512_bf16, oneMKL installed", "AMD EPYC", started,
                         shapes, {"fp32": {"http_tps": 60.0}, "bf16": {"http_tps": 90.0}}, 30.0)
    corpus, one = doc["shapes"]
    assert (corpus["bf16_vs_fp32"], corpus["fp32_vs_peer"], corpus["bf16_vs_peer"]) == \
        (1.25, 2.0, 2.5)
    assert (one["name"], one["bf16_vs_fp32"], one["bf16_vs_peer"]) == ("one_text", 1.5, 3.0)
    text = "\n".join(sides.format_sides(doc))
    assert "fp32 and bf16 side by side on AMD EPYC" in text
    assert "bf16: runs bf16 on mkl" in text
    assert "corpus" in text and "1.25x" in text and "2.50x" in text
    assert "16 one-text clients" in text


def test_a_run_without_them_says_why():
    doc = sides.describe("this CPU has no bf16 units", "AMD EPYC 7B13", {}, {}, {}, None)
    assert doc["measured"] is False
    assert sides.format_sides(doc)[-1].endswith("AMD EPYC 7B13: this CPU has no bf16 units")
