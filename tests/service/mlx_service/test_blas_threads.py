"""The lanes' BLAS thread count, set through threadpoolctl on the library MLX's matmuls run on.

Runs in the service's venv (MLX, numpy and threadpoolctl live there), with Debian's OpenBLAS
preloaded as MLX_BLAS would: numpy's own bundled OpenBLAS is loaded beside it and must keep
its own count.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mlx_service.kernels.blas import find_openblas
from tests.support import REPO_ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the BLAS thread count is a Linux CPU matter")

# Counts per library folder ("openblas-pthread", "numpy.libs") after each step. 3 threads:
# more than this 2-core machine's default, so a set that reached nothing shows.
SCRIPT = r"""
import json, threading
import mlx.core as mx, numpy
from threadpoolctl import threadpool_info
from mlx_service.kernels import blas
from mlx_service.models.fast_bert import BlasThreads

def counts():
    return {i["filepath"].rsplit("/", 2)[-2]: i["num_threads"] for i in threadpool_info()
            if i["user_api"] == "blas"}

threads = BlasThreads()
steps = {"start": counts()}
threads.set(3)
steps["set 3"] = counts()
threads.restore()
steps["restored"] = counts()
# Another thread (the service's worker) sets it next: threadpoolctl lets one thread at a time.
other = threading.Thread(target=lambda: (threads.set(3), steps.update({"other thread": counts()}),
                                         threads.restore()))
other.start(); other.join()
mx.eval(mx.ones((64, 64)) @ mx.ones((64, 64)))
print(json.dumps({"library": threads.library, "default": threads.default, "steps": steps,
                  "in_use": blas.blas_in_use()}))
"""


def run_script(service_py, env):
    done = subprocess.run([str(service_py), "-c", SCRIPT], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_the_preloaded_openblas_count_is_set_and_numpys_own_is_left_alone(service_py):
    openblas = find_openblas(os.environ)
    if openblas is None:
        pytest.skip("Debian's libopenblas0-pthread is not installed (scripts/bootstrap.sh adds it)")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    got = run_script(service_py, dict(env, LD_PRELOAD=openblas))
    assert got["library"] == os.path.realpath(openblas) and got["in_use"] == "openblas"
    steps, default = got["steps"], got["default"]
    numpy_own = steps["start"]["numpy.libs"]
    assert steps["start"]["openblas-pthread"] == default >= 1
    assert steps["set 3"] == {"openblas-pthread": 3, "numpy.libs": numpy_own}
    assert steps["restored"] == steps["start"]
    assert steps["other thread"]["openblas-pthread"] == 3


def test_without_a_preloaded_blas_nothing_is_set(service_py):
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    got = run_script(service_py, env)
    assert got["library"] is None and got["default"] is None and got["in_use"] == "reference"
    assert set(got["steps"]["set 3"]) == {"numpy.libs"}
    assert got["steps"]["set 3"] == got["steps"]["start"]


# oneMKL's bf16 GEMM runs on OpenMP's thread count (per calling thread), not oneMKL's own: a
# lane's share must reach it there. CPU seconds over wall seconds tell how many cores it took.
BF16_SCRIPT = r"""
import json, threading, time
import numpy as np
from mlx_service.kernels import gemm, native_math
from mlx_service.models.fast_bert import BlasThreads

threads = BlasThreads()
fn = gemm.bf16_gemm_function(native_math.load(True)[0])
fn.before_compute = threads.apply_here
w = fn.prepare(np.random.default_rng(0).standard_normal((1536, 384)).astype(np.float32))
x = np.random.default_rng(1).standard_normal((2048, 384)).astype(np.float32)

def cores_used():
    fn(x, w, 1536, None)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(4):
        fn(x, w, 1536, None)
    return (time.process_time() - cpu) / (time.perf_counter() - wall)

out = {"runtimes": len(threads._openmp), "default": threads.default}
threads.set(1)
lane = threading.Thread(target=lambda: out.update(lane=cores_used()))  # as a helper lane runs
lane.start(); lane.join()
out["caller"] = cores_used()
threads.restore()
out["restored"] = cores_used()
print(json.dumps(out))
"""


def test_a_lanes_share_reaches_onemkls_bf16_gemm(service_py):
    from mlx_service.kernels.blas import find_mkl
    mkl = find_mkl(os.environ, str(service_py.parent.parent))
    if mkl is None:
        pytest.skip("oneMKL is not in the service venv (`inv mlx install --blas mkl` adds it)")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    done = subprocess.run([str(service_py), "-c", BF16_SCRIPT], cwd=REPO_ROOT,
                          env=dict(env, LD_PRELOAD=mkl, KMP_BLOCKTIME="0"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.splitlines()[-1])
    assert got["runtimes"] >= 1  # oneMKL's OpenMP runtime was found
    assert got["lane"] < 1.3 and got["caller"] < 1.3, got  # one core each while split
    if got["default"] >= 2 and len(os.sched_getaffinity(0)) >= 2:
        assert got["restored"] > 1.3, got  # all of them again between batches


# The same rule without oneMKL (CI's service venv has none): a stand-in for threadpoolctl's
# controller, reporting oneMKL preloaded and an OpenMP runtime beside it, records which count
# each thread's omp_set_num_threads was given.
FAKE_MKL_SCRIPT = r"""
import json, threading
from mlx_service.models.fast_bert import BlasThreads

calls = []
class Dynlib:
    MKL_Set_Num_Threads = staticmethod(lambda n: calls.append(("mkl", n)))
    omp_set_num_threads = staticmethod(
        lambda n: calls.append(("omp", threading.current_thread().name, n)))
class Lib:
    filepath, num_threads, dynlib = "/venv/lib/libmkl_rt.so.2", 2, Dynlib()
class Selected:
    def __init__(self, libs): self.lib_controllers = libs
class Controller:
    def info(self):
        return [{"internal_api": "mkl", "filepath": Lib.filepath, "user_api": "blas"}]
    def select(self, filepath=None, user_api=None):
        return Selected([Lib()])

threads = BlasThreads(Controller(), {"LD_PRELOAD": Lib.filepath})
threads.apply_here()
threads.set(1)
lane = threading.Thread(target=threads.apply_here, name="lane-1")
lane.start(); lane.join()
threads.restore()
threads.apply_here()
print(json.dumps(calls))
"""


def test_each_lane_gives_openmp_its_share_and_the_default_comes_back(service_py):
    done = subprocess.run([str(service_py), "-c", FAKE_MKL_SCRIPT], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    got = [tuple(call) for call in json.loads(done.stdout.splitlines()[-1])]
    assert got == [("omp", "MainThread", 2), ("mkl", 1), ("omp", "lane-1", 1), ("mkl", 2),
                   ("omp", "MainThread", 2)]
