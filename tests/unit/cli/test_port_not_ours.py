"""Issue 17 row 14: another program holds the service's port. `inv roundtrip`, `inv status`,
`inv mlx status` and `inv health` say that the port answers but is not the embedding service,
and name the program (pid and command), through the real `inv`."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.support import free_port, health, inv, isolated_env


@pytest.fixture
def stranger(tmp_path):
    """`python -m http.server` on a free port: it answers /health with a 404 page."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                             "127.0.0.1"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while health(port)[0] is None:
        assert time.monotonic() < deadline, "http.server did not answer"
        time.sleep(0.1)
    try:
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def names_the_stranger(text: str, port: int, pid: int) -> None:
    assert f"port {port} answers" in text and "is not the embedding service" in text, text
    assert f"pid {pid}" in text and "http.server" in text, text


def test_roundtrip_says_the_port_is_not_the_service(stranger, tmp_path):
    port, pid = stranger
    done = inv("roundtrip", env=isolated_env(tmp_path, MLX_PORT=str(port)), timeout=120)
    assert done.returncode == 1
    names_the_stranger(done.stdout, port, pid)
    assert "JSONDecodeError" not in done.stdout and "inv mlx start" not in done.stdout


def test_status_and_health_do_not_count_it_as_the_service(stranger, tmp_path):
    port, pid = stranger
    env = isolated_env(tmp_path, MLX_PORT=str(port))
    doc = json.loads(inv("status", "--json", env=env, timeout=120).stdout)
    assert doc["connectivity"]["mlx"] is False and doc["mlx"]["responding"] is False
    names_the_stranger(doc["mlx"]["foreign"], port, pid)
    names_the_stranger(inv("status", env=env, timeout=120).stdout, port, pid)
    names_the_stranger(inv("mlx", "status", env=env, timeout=120).stdout, port, pid)
    checked = inv("health", env=env, timeout=120)
    assert checked.returncode == 1
    names_the_stranger(checked.stderr, port, pid)
