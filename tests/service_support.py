"""The embedding service as a real subprocess, and how tests talk to it.

Test support, kept out of the product package: `spawn_service` starts `python -m
mlx_service` in the service's own venv on a free loopback port; `http` answers any status
(4xx/5xx are answers here, not exceptions); `assert_parity` compares vectors with a
reference. Ports, URLs and cosine come from the tasks' one way of doing each.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tasks.checks.roundtrip import cosine
from tasks.core.ports import free_port
from tasks.core.settings import http_url
from tests.support import REPO_ROOT


def default_python() -> Path:
    venv = os.environ.get("MLX_VENV_PATH") or str(REPO_ROOT / ".venv-mlx")
    return Path(venv).expanduser() / "bin" / "python"


def assert_parity(items, vectors, min_cosine: float = 0.9999):
    """Each vector matches its reference item and is L2-normalized."""
    assert len(vectors) == len(items)
    for item, vec in zip(items, vectors):
        assert len(vec) == len(item["embedding"])
        sim = cosine(vec, item["embedding"])
        assert sim >= min_cosine, f"cosine {sim:.6f} for {item['text'][:40]!r}"
        assert abs(math.sqrt(sum(x * x for x in vec)) - 1) < 1e-4


# Settings the caller's shell might carry and that would change what the tests see.
SERVICE_SETTINGS = ("MLX_HOST", "MLX_PORT", "CORTEX_MLX_PORT", "EMBEDDINGS_MODEL", "RERANK_MODEL",
                "EMBEDDINGS_DIM",
                "MLX_BLAS", "MLX_MAX_BATCH_ITEMS", "MLX_MAX_REQUEST_BYTES", "MLX_QUEUE_SIZE",
                "MLX_MAX_BATCH_TOKENS", "MLX_HTTP_THREADS", "MLX_REQUEST_TIMEOUT", "LD_PRELOAD",
                "MLX_SERVICE_BLAS_REEXEC", "MLX_COALESCE_ROWS", "MLX_CPU_FAST", "MLX_CPU_LANES",
                "MLX_BATCH_WAIT_MS", "MLX_ADMISSION_TIME_PERCENT", "MLX_MAX_CONNECTIONS",
                "MLX_PRECISION", "MLX_NATIVE_KERNELS", "MLX_NATIVE_DIR", "MLX_TOKENIZER_CACHE",
                "MLX_PRECISION_CACHE")


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 60) -> tuple[int, dict, bytes]:
    """(status, headers, body) for any status: 4xx/5xx are answers here, not exceptions."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def post_json(url: str, payload, timeout: float = 120) -> tuple[int, dict]:
    status, _, raw = http("POST", url, json.dumps(payload).encode(),
                          {"Content-Type": "application/json"}, timeout)
    return status, json.loads(raw)


@dataclass
class ServiceProcess:
    proc: subprocess.Popen
    port: int
    log_path: Path
    host: str = "127.0.0.1"
    health_seen: list[tuple[int, str]] = field(default_factory=list)  # (code, status) in order
    started_at: float = field(default_factory=time.monotonic)
    healthy_after: float | None = None

    @property
    def url(self) -> str:
        return http_url(self.host, self.port)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, timeout: float = 30) -> tuple[int, dict]:
        status, _, raw = http("GET", self.url + path, timeout=timeout)
        return status, json.loads(raw)

    def post(self, path: str, payload, timeout: float = 120) -> tuple[int, dict]:
        return post_json(self.url + path, payload, timeout)

    def wait_healthy(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode} before it was "
                                   f"healthy:\n{self.log()[-3000:]}")
            try:
                status, _, raw = http("GET", self.url + "/health", timeout=5)
                state = json.loads(raw).get("status", "?")
            except (OSError, ValueError):
                status, state = 0, "unreachable"
            if not self.health_seen or self.health_seen[-1] != (status, state):
                self.health_seen.append((status, state))
            if status == 200:
                self.healthy_after = time.monotonic() - self.started_at
                return
            time.sleep(0.02)  # fast polling: the test of "503 while loading" relies on it
        raise RuntimeError(f"service not healthy after {timeout}s:\n{self.log()[-3000:]}")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, as a user or supervisor would; kill only if it hangs. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def spawn_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_SETTINGS}
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO_ROOT))
    env.update(overrides)
    return env


def spawn_service(log_dir: Path, *args: str, env: dict[str, str] | None = None,
                  port: int | None = None, wait: bool = True, timeout: float = 120,
                  python: str | Path | None = None) -> ServiceProcess:
    """Start `python -m mlx_service ARGS` on a free loopback port (unless env/args name one).

    `env` overrides are applied on top of a clean environment (see spawn_env); `python` is
    the service venv's interpreter (default: $MLX_VENV_PATH or the repo's .venv-mlx)."""
    port = port or free_port()
    env = spawn_env(**{"MLX_HOST": "127.0.0.1", "MLX_PORT": str(port), **(env or {})})
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"mlx-service-{port}.log"
    python = Path(python or default_python())
    if not python.exists():
        raise RuntimeError(f"no service venv at {python}: run `inv test.service` to create it")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(python), "-m", "mlx_service", *args], cwd=REPO_ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    svc = ServiceProcess(proc=proc, port=port, log_path=log_path)
    if wait:
        try:
            svc.wait_healthy(timeout)
        except Exception:
            svc.stop()
            raise
    return svc
