"""inv verify: its checks, and the real program's answers on this machine."""
import json
import os
import socket

import pytest

from tasks.stack.engine import EngineInfo, engine_kind
from tasks.core.settings import load_settings
from tasks.checks.verify import FAIL, PASS, WARN, check_env_file, check_mlx_backend, run_checks, verdict
from tests.support import inv, isolated_env


def test_backend_named_per_platform():
    assert check_mlx_backend("Darwin", "arm64").detail.startswith("Metal")
    assert check_mlx_backend("Darwin", "x86_64").status == FAIL
    assert check_mlx_backend("Linux", "x86_64", {}).detail.startswith("CPU")


def test_backend_reports_the_blas_choice(tmp_path):
    library = tmp_path / "libopenblas.so.0"
    library.write_bytes(b"")
    venv = tmp_path / "venv"
    forced = check_mlx_backend("Linux", "x86_64", {"MLX_OPENBLAS_PATH": str(library),
                                                   "MLX_BLAS": "openblas"}, venv)
    assert forced.status == PASS and "OpenBLAS" in forced.detail and "MLX_BLAS=openblas" in forced.detail
    refused = check_mlx_backend("Linux", "x86_64", {"MLX_OPENBLAS_PATH": str(library), "MLX_BLAS": "reference"},
                                venv)
    assert refused.status == WARN and "MLX_BLAS=reference" in refused.detail
    missing = check_mlx_backend("Linux", "x86_64", {"MLX_OPENBLAS_PATH": str(tmp_path / "no.so"),
                                                    "MLX_BLAS": "openblas"}, venv)
    assert missing.status == FAIL and missing.fix
    no_mkl = check_mlx_backend("Linux", "x86_64", {"MLX_BLAS": "mkl"}, venv)
    assert no_mkl.status == FAIL and "inv mlx install --blas mkl" in no_mkl.fix


def test_backend_says_what_auto_will_pick_and_why(tmp_path):
    """auto: before any probe it says the next start measures; after, the cached winner."""
    from mlx_service.kernels import blas

    openblas = tmp_path / "libopenblas.so.0"
    openblas.write_bytes(b"openblas")
    venv = tmp_path / "venv"
    mkl = venv / "lib" / "libmkl_rt.so.3"
    mkl.parent.mkdir(parents=True)
    mkl.write_bytes(b"mkl")
    env = {"MLX_OPENBLAS_PATH": str(openblas)}
    before = check_mlx_backend("Linux", "x86_64", env, venv)
    assert before.status == PASS and "measures OpenBLAS, oneMKL" in before.detail
    candidates = blas.find_candidates(env, str(venv), blas.mlx_version(str(venv)))
    probes = {"openblas": {"gflops": 70.0}, "mkl": {"gflops": 64.0}, "reference": {"gflops": 5.0}}
    blas.write_cache(blas.cache_path(env, str(venv)), {}, blas.machine_identity(), candidates,
                     probes)
    after = check_mlx_backend("Linux", "x86_64", env, venv)
    assert after.status == PASS
    assert "OpenBLAS preloaded" in after.detail and "openblas 70 GFLOPS vs mkl 64" in after.detail


def test_env_file_flags_services_sharing_a_port():
    settings = load_settings(environ={"CORTEX_MODEL_GATEWAY_PORT": "8081", "MLX_PORT": "8081"})
    check = check_env_file(settings)
    assert check.status == FAIL
    assert "8081" in check.detail and "mlx" in check.detail and "modelGateway" in check.detail


def test_env_file_rejects_a_port_that_is_not_a_number():
    check = check_env_file(load_settings(environ={"CORTEX_NATS_PORT": "nats"}))
    assert check.status == FAIL and "CORTEX_NATS_PORT" in check.detail


@pytest.mark.parametrize("info, context, kind", [
    ({"OperatingSystem": "Docker Desktop"}, "desktop-linux", "Docker Desktop"),
    ({"OperatingSystem": "OrbStack"}, "orbstack", "OrbStack"),
    ({"OperatingSystem": "Ubuntu 24.04", "Name": "colima"}, "colima", "Colima"),
    ({"OperatingSystem": "Debian GNU/Linux 12"}, "default", "dockerd"),
])
def test_engine_kind(info, context, kind):
    assert engine_kind(info, context, "docker") == kind


def test_engine_hint_names_docker_host(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nowhere.sock")
    assert "DOCKER_HOST" in EngineInfo(cli="docker", answers=False).start_hint


def test_verdict_is_the_worst_status():
    from tasks.checks.verify import Check
    assert verdict([Check("a", PASS, ""), Check("b", WARN, "")]) == WARN
    assert verdict([Check("a", PASS, ""), Check("b", FAIL, "")]) == FAIL


def test_verify_json_reports_a_foreign_port_holder_by_pid(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        env = isolated_env(tmp_path, CORTEX_API_PORT=str(port))
        done = inv("verify", "--json", env=env, timeout=180)
    document = json.loads(done.stdout)  # stdout is JSON alone
    check = next(c for c in document["checks"] if c["name"] == f"port api ({port})")
    assert check["status"] in (WARN, FAIL)
    assert f"pid {os.getpid()}" in check["detail"]
    assert check["fix"]


def test_verify_fails_with_a_fix_when_the_engine_does_not_answer(tmp_path):
    env = isolated_env(tmp_path, DOCKER_HOST=f"unix://{tmp_path}/dead.sock")
    done = inv("verify", env=env, timeout=180)
    assert done.returncode != 0
    assert "[FAIL] container engine" in done.stdout
    assert "fix: check DOCKER_HOST" in done.stdout


def test_all_checks_run_even_when_one_breaks(tmp_path):
    checks = run_checks(load_settings(environ={"MLX_VENV_PATH": str(tmp_path / "none")}))
    venv = next(c for c in checks if c.name == "service venv")
    assert venv.status == FAIL and venv.fix == "inv mlx install"
    assert {"os", "python", "tooling", "disk"} <= {c.name for c in checks}


def test_tooling_pins_are_read_as_requirements():
    from tasks.checks.verify import pinned_requirements, same_version

    text = ("# comment\ninvoke==3.0.3  # trailing\nrequests>=2\nnot a requirement ==\n"
            "psutil == 7.2.2\nonly-elsewhere==1.0; sys_platform == 'nonexistent'\n\n")
    assert pinned_requirements(text) == [("invoke", "3.0.3"), ("psutil", "7.2.2")]
    assert same_version("1.0", "1.0.0") and not same_version("1.0.1", "1.0")
