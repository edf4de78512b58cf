"""`inv mlx install` waits for the start lock and goes ahead once it is free (the service
venv must exist: the service session makes it, the unit session does not)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from tasks.host.pidfile_lock import locked
from tasks.host.service_venv import service_venv_ready
from tasks.core.settings import load_settings
from tests.support import REPO_ROOT, isolated_env


def _pidfile(env: dict) -> Path:
    return Path(env["CORTEX_RUN_DIR"]) / "mlx-server.pid"


def test_install_proceeds_once_the_holder_lets_go(tmp_path):
    settings = load_settings()
    assert service_venv_ready(settings), f"{settings.mlx_venv} is not current: run inv mlx install"
    env = isolated_env(tmp_path)
    holding = threading.Event()
    release = threading.Event()

    def hold():
        with locked(_pidfile(env), 5, doing="inv mlx start"):
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        proc = subprocess.Popen([sys.executable, "-m", "invoke", "mlx", "install"], cwd=REPO_ROOT,
                                env=env, stderr=subprocess.PIPE, text=True)
        first = proc.stderr.readline()
        assert f"waiting for pid {os.getpid()} (inv mlx start)" in first, first
        time.sleep(0.5)
        assert proc.poll() is None  # still waiting: nothing installed meanwhile
    finally:
        release.set()
        holder.join(10)
    rest = proc.stderr.read()
    assert proc.wait(120) == 0, first + rest
    assert "venv up to date" in rest
    proc.stderr.close()
