"""Acting on the BLAS decision: what to preload, what is found, the cache file, what is mapped."""
from __future__ import annotations

import json

from mlx_service.blas import (OPENBLAS_CANDIDATES, REEXEC_MARKER, Candidate, Decision,
                              blas_in_use, exec_env, find_candidates, find_mkl, preload_for,
                              preloaded_library)
from mlx_service.blas_cache import cache_path, read_cache, write_cache

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


def test_blas_in_use_reads_the_mapped_libraries(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(f"7f00-7f01 r-xp 0 08:01 1 {LIB}\n7f02-7f03 r-xp 0 08:01 2 /lib/libc.so.6\n")
    assert blas_in_use(str(maps), "linux") == "openblas"
    maps.write_text(f"7f00-7f01 r-xp 0 08:01 1 {MKL}\n")
    assert blas_in_use(str(maps), "linux") == "mkl"
    maps.write_text("7f02-7f03 r-xp 0 08:01 2 /x/libmlx.so\n")
    assert blas_in_use(str(maps), "linux") == "reference"
    assert blas_in_use(str(maps), "darwin") == "accelerate"
