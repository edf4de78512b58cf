"""The processes a benchmark measures, started and stopped by it: the service
(`python -m mlx_service` on a free loopback port) and the engine processes that speak
tasks/bench/scripts/worker.py's line protocol (in-process MLX, the peer).

tasks/bench/scripts/request_path.py imports this module in the service venv, which has no
invoke, dotenv or prometheus_client: keep its imports to the standard library, tasks.core's
ports, polling and local_http (requests), and tasks.bench.errors.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Mapping, Sequence

from tasks.bench.errors import BenchError
from tasks.core.local_http import KeepAliveClient
from tasks.core.polling import poll_until
from tasks.core.ports import free_port


def log_tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def is_service_setting(name: str) -> bool:
    """An environment variable the service reads as one of its settings."""
    return (name.startswith(("MLX_", "EMBEDDINGS_"))
            or name in ("CORTEX_MLX_PORT", "LD_PRELOAD"))


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already


def stop_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the process group `proc` leads (it was started in a session of its own),
    SIGKILL after `grace`; then whatever of the group is left, so nothing it started stays
    behind."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
    _signal_group(proc.pid, signal.SIGKILL)


class BenchService:
    """`python -m mlx_service` on a free loopback port, started and stopped by us."""

    def __init__(self, python: Path, root: Path, log: Path, env: Mapping[str, str] | None = None,
                 label: str = "service", headers: Mapping[str, str] | None = None,
                 defaults: bool = False):
        """defaults: the service's own settings (MLX_*, EMBEDDINGS_*, LD_PRELOAD) are not
        inherited from this environment, so it runs with its default limits plus `env`."""
        self.python, self.root, self.log, self.label = python, root, log, label
        self.env = dict(env or {})
        self.defaults = defaults
        self.headers = dict(headers or {})  # what our own calls carry (the API key)
        self.port = free_port()
        # Not tasks.core.settings.http_url: settings needs dotenv, which the service venv lacks.
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.cold_start_s: float | None = None

    def start(self, timeout: float = 120.0) -> float:
        """Launch and wait for /health 200; returns launch-to-healthy seconds."""
        inherited = {k: v for k, v in os.environ.items()
                     if not (self.defaults and is_service_setting(k))}
        env = dict(inherited, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **self.env)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            t0 = time.perf_counter()
            self.proc = subprocess.Popen(
                [str(self.python), "-m", "mlx_service", "--host", "127.0.0.1",
                 "--port", str(self.port)],
                cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        probe = KeepAliveClient(self.port, timeout=1)

        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.label} exited with {self.proc.returncode} before it "
                                 f"was healthy; log {self.log}:\n{log_tail(self.log)}")
            try:
                return probe.request("GET", "/health").status == 200
            except (OSError, http.client.HTTPException):
                return False

        try:
            if poll_until(healthy, timeout, interval=0.02):
                self.cold_start_s = time.perf_counter() - t0
                return self.cold_start_s
        finally:
            probe.close()
        self.stop()
        raise BenchError(f"{self.label} was not healthy after {timeout:.0f} s; log {self.log}")

    def stop(self, grace: float = 15.0) -> None:
        if self.proc is None:
            return
        stop_group(self.proc, grace)

    def get(self, path: str) -> bytes:
        """GET path on a connection of its own; raises OSError or HTTPException."""
        client = KeepAliveClient(self.port, timeout=10, headers=self.headers)
        try:
            return client.request("GET", path).body
        finally:
            client.close()

    def get_json(self, path: str) -> dict:
        return json.loads(self.get(path))

    def metrics_text(self) -> str:
        """/metrics as text; "" when the service does not answer."""
        try:
            return self.get("/metrics").decode("utf-8", errors="replace")
        except (OSError, http.client.HTTPException):
            return ""


class EngineProcess:
    """A tasks/bench/scripts/worker.py-protocol process (in-process MLX, or the peer)."""

    def __init__(self, argv: Sequence[str], root: Path, log: Path, label: str,
                 env: Mapping[str, str] | None = None):
        self.label, self.log = label, log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log, "ab")
        # A session of its own, as the services': close() ends its whole group.
        self.proc = subprocess.Popen(list(argv), cwd=root, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     bufsize=1, env=dict(os.environ, **(env or {})),
                                     start_new_session=True)
        self.info: dict = {}

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise BenchError(f"{self.label} exited ({self.proc.returncode}); log {self.log}:\n"
                             f"{log_tail(self.log)}")
        return json.loads(line)

    def wait_ready(self) -> dict:
        reply = self._read()
        if not reply.get("ready"):
            raise BenchError(f"{self.label} did not start: {reply}")
        self.info = {k: v for k, v in reply.items() if k != "ready"}
        return self.info

    def run(self, texts: Sequence[str], batch_size: int) -> float:
        self.proc.stdin.write(json.dumps({"op": "run", "texts": list(texts),
                                          "batch_size": batch_size}) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if "error" in reply:
            raise BenchError(f"{self.label}: {reply['error']}")
        return float(reply["seconds"])

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            stop_group(self.proc, grace=5.0)
            self._log.close()
