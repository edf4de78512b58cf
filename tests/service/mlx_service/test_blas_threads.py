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
