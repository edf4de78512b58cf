"""MLX_BLAS=auto for real: the GEMM probe in subprocesses, its cache, the re-exec that acts on it.

Runs in the service's venv (MLX lives there), with a cache file of the test's own.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlx_service.kernels.blas import find_mkl, find_openblas
from mlx_service.kernels.precision import bf16_pays
from tests.support import REPO_ROOT, free_port

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the BLAS choice is a Linux CPU matter")

CHOOSE = r"""
import json, sys, time
from mlx_service.kernels import blas
said = []
t0 = time.perf_counter()
decision = blas.choose("auto", say=said.append)
print(json.dumps({"decision": decision.as_dict(), "said": said,
                  "seconds": time.perf_counter() - t0}))
"""

# The child of the re-exec reports what it runs on, with MLX imported, and numpy (whose wheel
# bundles an OpenBLAS of its own that MLX never calls: not what the matmuls run on).
CHILD = ("import json, mlx.core as mx, numpy; from mlx_service.kernels import blas; "
         "mx.eval(mx.ones((64, 64)) @ mx.ones((64, 64))); "
         "print(json.dumps({'in_use': blas.blas_in_use(), 'choice': blas.current_choice()}))")
REEXEC = r"""
import sys
from pathlib import Path
from mlx_service.kernels import blas
blas.maybe_reexec(sys.argv[1], [], command=[sys.executable, "-c", sys.argv[2]])
print('{"reexec": false}')
"""


def run_py(service_py, script, env, *args, timeout=120):
    done = subprocess.run([str(service_py), "-c", script, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return done


@pytest.fixture
def env(tmp_path):
    return dict(os.environ, MLX_BLAS_CACHE=str(tmp_path / "blas-choice.json"))


def test_auto_probes_once_then_reads_its_cache(service_py, env, tmp_path):
    first = run_py(service_py, CHOOSE, env)
    assert first.returncode == 0, first.stderr[-2000:]
    got = json.loads(first.stdout.splitlines()[-1])
    found = got["decision"]["gflops"]
    if find_openblas(os.environ):
        assert {"openblas", "reference"} <= set(found)
    if len(found) > 1:
        assert got["said"] and "measuring" in got["said"][0]
        assert all(isinstance(v, float) and v > 0 for v in found.values()), found
        bf16 = found.pop("mkl_bf16", None)  # oneMKL's bf16 Linear, on a CPU with bf16 units
        native = found.pop("native_bf16", 0.0)  # the native bf16 GEMM, on AVX512_BF16
        best = max(found, key=found.get)
        if bf16 is not None and bf16_pays(max(found[best], native), bf16,
                                          faster_is_larger=True):
            best = "mkl"  # kept for its bf16 GEMM (blas.decide; unit-tested per CPU kind)
        assert got["decision"]["library"] == best
        assert "measured now" in got["decision"]["reason"]
        assert got["seconds"] < 3 * len(found), "the probe must stay short"
        assert (tmp_path / "blas-choice.json").exists()
        again = json.loads(run_py(service_py, CHOOSE, env).stdout.splitlines()[-1])
        assert again["said"] == [] and "cached probe" in again["decision"]["reason"]
        assert again["decision"]["library"] == best


def test_a_library_that_cannot_load_is_passed_over(service_py, env, tmp_path):
    broken = tmp_path / "lib" / "libmkl_rt.so.3"
    broken.parent.mkdir()
    broken.write_bytes(b"not an ELF file")
    env["MLX_MKL_PATH"] = str(broken)
    done = run_py(service_py, CHOOSE, env)
    assert done.returncode == 0, done.stderr[-2000:]
    decision = json.loads(done.stdout.splitlines()[-1])["decision"]
    assert decision["library"] != "mkl"
    assert str(decision["gflops"]["mkl"]).startswith("failed")


def test_the_reexec_runs_on_the_library_chosen_and_says_why(service_py, env):
    done = run_py(service_py, REEXEC, env, "auto", CHILD)
    assert done.returncode == 0, done.stderr[-2000:]
    child = json.loads(done.stdout.splitlines()[-1])
    expected = "openblas" if find_openblas(os.environ) else "reference"
    if expected == "reference":
        assert child == {"reexec": False}
        return
    # oneMKL in the venv may win on measurement (its float32, or its bf16 on a CPU with bf16
    # units: blas.decide, unit-tested per CPU kind); whichever won is what the child runs on.
    has_mkl = find_mkl(os.environ, str(Path(service_py).parent.parent)) is not None
    assert child["in_use"] == child["choice"]["library"]
    assert child["in_use"] in (("openblas", "mkl") if has_mkl else ("openblas",))
    assert child["choice"]["reason"].startswith("auto:")
    forced = json.loads(run_py(service_py, REEXEC, dict(env, LD_PRELOAD=find_openblas(os.environ)),
                               "reference", CHILD).stdout.splitlines()[-1])
    assert forced["in_use"] == "reference" and forced["choice"]["reason"] == "MLX_BLAS=reference"


def test_a_forced_library_that_is_missing_stops_the_service_with_a_hint(service_py, env, tmp_path):
    env.update(MLX_MKL_PATH=str(tmp_path / "missing.so"), HF_HUB_OFFLINE="1")
    done = subprocess.run([str(service_py), "-m", "mlx_service", "--blas", "mkl",
                           "--port", str(free_port())], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "inv mlx install --blas mkl" in done.stderr
    assert "Traceback" not in done.stderr
