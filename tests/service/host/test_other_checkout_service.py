"""Issue 17 row 15, the host service: the embedding service of another checkout of the
project answers on this checkout's port. `inv status`, `inv mlx status` and `inv health` say
whose it is and do not count it as this stack's (the real service, run from a copy of
mlx_service/ in another folder, as a second checkout would run it)."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.service_support import ServiceProcess, default_python, spawn_env
from tests.support import REPO_ROOT, free_port, inv, isolated_env


@pytest.fixture
def colleague_service(tmp_path):
    """The service started from another checkout's folder, on a port of its own."""
    other = tmp_path / "colleague-checkout"
    shutil.copytree(REPO_ROOT / "mlx_service", other / "mlx_service",
                    ignore=shutil.ignore_patterns("__pycache__"))
    port = free_port()
    log_path = tmp_path / "colleague.log"
    env = spawn_env(MLX_HOST="127.0.0.1", MLX_PORT=str(port), PYTHONPATH=str(other))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(default_python()), "-m", "mlx_service"], cwd=other, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    service = ServiceProcess(proc=proc, port=port, log_path=log_path)
    try:
        service.wait_healthy(180)
        yield service, other
    finally:
        service.stop()


def test_status_and_health_name_another_checkout_s_service(colleague_service, tmp_path):
    service, other = colleague_service
    env = isolated_env(tmp_path, MLX_PORT=str(service.port))
    whose = f"pid {service.proc.pid}, started from {other}"

    doc = json.loads(inv("status", "--json", env=env, timeout=180).stdout)
    assert doc["mlx"]["running"] is False
    assert doc["mlx"]["other_checkout"] == whose
    assert whose in inv("status", env=env, timeout=180).stdout
    assert "another checkout's service" in inv("mlx", "status", env=env, timeout=180).stdout

    checked = inv("health", env=env, timeout=180)
    assert checked.returncode == 1
    mlx_row = next(line for line in checked.stdout.splitlines() if line.startswith("mlx (host)"))
    assert " no " in mlx_row  # not ready: it is not this stack's service
    assert "another checkout's embedding service" in checked.stderr and str(other) in checked.stderr
