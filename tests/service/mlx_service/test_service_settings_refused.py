"""Issue 17 row 12, the service's half: `python -m mlx_service` refuses a setting it cannot use
with one line naming the variable the user set, exit 2, before it listens or loads anything
(README's promise), never a traceback. (Through `inv`, the tasks refuse the same settings
before a start: tests/unit/cli/test_careless_user.py.)"""
from __future__ import annotations

import subprocess

import pytest

from tests.service_support import default_python, spawn_env
from tests.support import REPO_ROOT, free_port

REFUSED = [
    ("MLX_HOST", "bogus.invalid", "not an address to listen on"),
    # TEST-NET-1 (RFC 5737): resolves, but is never this machine's (was exit 1 at bind time).
    ("MLX_HOST", "192.0.2.1", "not an address of this machine"),
    ("MLX_LOG_LEVEL", "LOUD", "is not one of"),
    ("MLX_LOG_FILE", "/proc/nope/x", "cannot be written"),
]
# EMBEDDINGS_DIM=0 was named right when the service read it itself; through `inv` it read
# --dim: tests/unit/cli/test_careless_user.py has that case.


@pytest.mark.parametrize("name, value, why", REFUSED)
def test_the_service_names_the_variable_and_exits_2(name, value, why):
    port = free_port()
    env = spawn_env(**{"MLX_HOST": "127.0.0.1", "MLX_PORT": str(port), name: value})
    done = subprocess.run([str(default_python()), "-m", "mlx_service"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("mlx_service: error: ")
    assert f"{name}={value!r}" in lines[0] or f"{name}={value}" in lines[0], lines[0]
    assert why in lines[0] and "--dim" not in lines[0]

