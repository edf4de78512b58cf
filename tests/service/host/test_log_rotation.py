"""A detached service rotates its own log by size while it runs (not only at `inv mlx start`)."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support import inv, isolated_env

START_TIMEOUT = 180
LIMIT = 4000  # bytes; one request line is ~60, so 60 requests pass it


def _request(method: str, url: str, payload: dict | None = None) -> int:
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_detached_service_rotates_its_log_while_running(tmp_path):
    env = isolated_env(tmp_path, MLX_LOG_MAX_BYTES=str(LIMIT))
    log = Path(env["CORTEX_LOG_DIR"]) / "mlx-server.log"
    url = f"http://127.0.0.1:{env['MLX_PORT']}"
    try:
        r = inv("mlx", "start", env=env, timeout=START_TIMEOUT)
        assert r.returncode == 0, r.stderr
        for i in range(60):
            assert _request("POST", url + "/embed", {"input": f"line {i}"}) == 200
        # The newest lines, told apart by their paths (404s are logged like any request).
        for i in range(3):
            assert _request("GET", f"{url}/rotation-marker-{i}") == 404

        # Log lines are written by the service's queue listener, just after the answers.
        deadline = time.monotonic() + 10
        while "/rotation-marker-2 404" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)

        rotated = log.with_name(log.name + ".1")
        assert rotated.exists(), "the running service never rotated its log"
        assert log.stat().st_size < 2 * LIMIT
        assert not log.with_name(log.name + ".4").exists()  # three backups kept, no more
        current = log.read_text()
        # The newest line is in the current file; the three may straddle the last rotation.
        assert "/rotation-marker-2 404" in current, current
        recent = rotated.read_text() + current
        assert all(f"/rotation-marker-{i} 404" in recent for i in range(3)), recent

        logs = inv("mlx", "logs", "-n", "5", env=env)
        assert logs.returncode == 0, logs.stderr
        assert "/rotation-marker-2 404" in logs.stdout
    finally:
        inv("mlx", "stop", "--grace", "3", env=env, timeout=60)
