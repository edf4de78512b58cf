"""Acting on the BLAS decision: what to preload, what is found, the cache file, and which
loaded library the matmuls run on."""
from __future__ import annotations

import json

from mlx_service.kernels.blas import (OPENBLAS_CANDIDATES, REEXEC_MARKER, Candidate, Decision,
                              blas_in_use, exec_env, find_candidates, find_mkl, matmul_blas,
                              preload_for, preloaded_library, preloaded_paths)
from mlx_service.kernels.blas_cache import cache_path, cached_probes, read_cache, write_cache

LIB = OPENBLAS_CANDIDATES[0]
MKL = "/venv/lib/libmkl_rt.so.3"


def chosen(library, path):
    return Decision(library, path, "test")


def test_the_chosen_library_is_preloaded_before_the_users_own():
    assert preload_for(chosen("openblas", LIB), {}) == LIB
    assert preload_for(chosen("openblas", LIB), {"LD_PRELOAD": "/x/libfoo.so"}) == f"{LIB}:/x/libfoo.so"
    assert preload_for(chosen("mkl", MKL), {"LD_PRELOAD": LIB}) == MKL  # one BLAS, not two


def test_nothing_to_do_when_it_is_already_so():
    assert preload_for(chosen("openblas", LIB), {"LD_PRELOAD": LIB}) is None
    assert preload_for(chosen("reference", None), {}) is None
    assert preload_for(chosen("mkl", None), {"LD_PRELOAD": "/opt/libmkl_rt.so.2"}) is None


def test_reference_drops_an_inherited_blas_preload():
    assert preload_for(chosen("reference", None), {"LD_PRELOAD": LIB}) == ""
    assert preload_for(chosen("reference", None), {"LD_PRELOAD": f"{LIB}:/x/libfoo.so"}) == "/x/libfoo.so"


def test_exec_env_marks_the_reexec_and_sets_mkls_threads():
    env = exec_env(chosen("mkl", MKL), {"PATH": "/bin"})
    assert env["LD_PRELOAD"] == MKL and env[REEXEC_MARKER] == "1" and env["KMP_BLOCKTIME"] == "0"
    assert exec_env(chosen("mkl", MKL), {"KMP_BLOCKTIME": "50"})["KMP_BLOCKTIME"] == "50"
    assert "LD_PRELOAD" not in exec_env(chosen("reference", None), {"LD_PRELOAD": LIB})
    assert exec_env(chosen("openblas", LIB), {"LD_PRELOAD": LIB}) is None


def test_libraries_are_found_where_they_install(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    assert find_mkl({}, str(tmp_path)) is None
    (lib / "libmkl_rt.so.3").write_bytes(b"x")
    assert find_mkl({}, str(tmp_path)) == str(lib / "libmkl_rt.so.3")
    assert find_mkl({"MLX_MKL_PATH": str(tmp_path / "nope.so")}, str(tmp_path)) is None
    found = find_candidates({"MLX_OPENBLAS_PATH": str(tmp_path / "none.so")}, str(tmp_path), "0.32")
    assert sorted(found) == ["mkl", "reference"]
    assert found["reference"] == Candidate("reference", None, "mlx 0.32")
    assert str(lib / "libmkl_rt.so.3") in found["mkl"].identity


def test_preloaded_library_is_read_from_ld_preload():
    assert preloaded_library({"LD_PRELOAD": f"/x/libfoo.so {LIB}"}) == "openblas"
    assert preloaded_library({"LD_PRELOAD": "/x/libfoo.so"}) is None


def test_cache_file_round_trip(tmp_path):
    path = cache_path({"MLX_BLAS_CACHE": str(tmp_path / "c.json")})
    assert read_cache(path) == {}
    candidate = {"openblas": Candidate("openblas", LIB, "v1")}
    write_cache(path, {}, "cpu", candidate, {"openblas": {"gflops": 70.0}})
    doc = read_cache(path)
    assert [e["gflops"] for e in doc["entries"].values()] == [70.0]
    path.write_text("not json")
    assert read_cache(path) == {}
    assert cache_path({}, "/venv") == type(path)("/venv/mlx-blas-choice.json")
    write_cache(tmp_path / "no-such-dir" / "c.json", {}, "cpu", candidate, {})  # silent
    assert json.loads(json.dumps(doc))


# What threadpoolctl's threadpool_info() reports in the service with OpenBLAS preloaded.
NUMPY_OWN = {"user_api": "blas", "internal_api": "openblas", "prefix": "libscipy_openblas",
             "filepath": "/venv/site-packages/numpy.libs/libscipy_openblas64_-32a4b2a6.so"}
DEBIAN = {"user_api": "blas", "internal_api": "openblas", "prefix": "libopenblas",
          "filepath": "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so"}
ONEMKL = {"user_api": "blas", "internal_api": "mkl", "prefix": "libmkl_rt", "filepath": MKL}
GOMP = {"user_api": "openmp", "internal_api": "openmp", "prefix": "libgomp",
        "filepath": "/lib/x86_64-linux-gnu/libgomp.so.1"}


def test_the_matmul_blas_is_picked_from_threadpoolctls_list():
    assert matmul_blas([NUMPY_OWN, DEBIAN]) == DEBIAN
    assert matmul_blas([NUMPY_OWN, GOMP, ONEMKL]) == ONEMKL
    assert matmul_blas([ONEMKL, DEBIAN], preloaded=(DEBIAN["filepath"],)) == DEBIAN
    assert matmul_blas([ONEMKL, DEBIAN], preloaded=("/x/libfoo.so",)) == ONEMKL


def test_numpys_bundled_openblas_is_not_the_matmul_blas():
    assert matmul_blas([NUMPY_OWN, GOMP]) is None
    scipy_own = dict(NUMPY_OWN, filepath="/venv/site-packages/scipy.libs/libscipy_openblas.so")
    assert matmul_blas([scipy_own], preloaded=(scipy_own["filepath"],)) is None
    assert matmul_blas([]) is None


def test_preloaded_paths_are_the_real_files(tmp_path):
    real = tmp_path / "libopenblasp-r0.3.21.so"
    real.write_bytes(b"x")
    (tmp_path / "libopenblas.so.0").symlink_to(real.name)
    environ = {"LD_PRELOAD": f"{tmp_path / 'libopenblas.so.0'}:/x/libfoo.so"}
    assert preloaded_paths(environ) == (str(real), "/x/libfoo.so")
    assert preloaded_paths({}) == ()


def test_macos_runs_on_accelerate():
    assert blas_in_use("darwin") == "accelerate"


def test_a_round_where_every_probe_failed_is_not_cached(tmp_path):
    # Seen when the venv was rebuilt under a running start: "No module named 'mlx'" for
    # every library, cached, and MLX's reference BLAS chosen at every later start.
    path = tmp_path / "c.json"
    candidates = {n: Candidate(n, None, n) for n in ("openblas", "reference")}
    broken = {n: {"error": "ModuleNotFoundError: No module named 'mlx'"} for n in candidates}
    write_cache(path, {}, "cpu", candidates, broken)
    assert cached_probes(read_cache(path), "cpu", candidates) == {}
    write_cache(path, {}, "cpu", candidates, {"openblas": {"error": "bad ELF"},
                                              "reference": {"gflops": 5.0}})
    assert set(cached_probes(read_cache(path), "cpu", candidates)) == {"openblas", "reference"}


def test_each_probe_runs_one_thread_of_every_kind(tmp_path):
    """A lane runs one thread; so does the probe that speaks for it. oneMKL's bf16 GEMM heeds
    only OpenMP's count (OMP_NUM_THREADS): without it a 'one-thread' bf16 figure was measured
    on every core and won against float32 on one. A stand-in interpreter prints what the
    probe's process was given, as the probe prints its figures."""
    from mlx_service.kernels.blas import probe_library
    fake_python = tmp_path / "python"
    fake_python.write_text(
        "#!/usr/bin/env python3\nimport json, os\n"
        "print(json.dumps({'library': 'mkl', 'gflops': 1.0, 'env': {k: os.environ.get(k) "
        "for k in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS', "
        "'KMP_BLOCKTIME', 'LD_PRELOAD')}}))\n")
    fake_python.chmod(0o755)
    got = probe_library(Candidate("mkl", MKL), {"OMP_NUM_THREADS": "8", "PATH": "/usr/bin:/bin"},
                        python=str(fake_python))
    assert got["env"] == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                          "OPENBLAS_NUM_THREADS": "1", "KMP_BLOCKTIME": "0", "LD_PRELOAD": MKL}


def test_a_forced_openblas_core_type_is_measured_apart(tmp_path):
    """OPENBLAS_CORETYPE picks OpenBLAS's kernels (Haswell's AVX2 ran at half SkylakeX's
    AVX-512 speed on a Zen 5): a probe cached under one setting must not speak for another."""
    from mlx_service.kernels.blas_cache import machine_identity
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f\n")
    plain = machine_identity(str(cpuinfo), {})
    forced = machine_identity(str(cpuinfo), {"OPENBLAS_CORETYPE": "Haswell"})
    assert plain.startswith("AMD EPYC flags:") and forced == plain + " OPENBLAS_CORETYPE:Haswell"
    assert machine_identity(str(cpuinfo), {"OPENBLAS_CORETYPE": ""}) == plain


def test_the_kernels_the_blas_runs_are_named_with_what_forced_them():
    from mlx_service.kernels.blas import describe_kernels
    openblas = {"internal_api": "openblas", "architecture": "Haswell"}
    assert describe_kernels(openblas, {}) == "Haswell kernels"
    assert (describe_kernels(openblas, {"OPENBLAS_CORETYPE": "Haswell"})
            == "Haswell kernels, OPENBLAS_CORETYPE=Haswell")
    assert describe_kernels({"internal_api": "mkl", "architecture": None},
                            {"OPENBLAS_CORETYPE": "Haswell"}) is None
