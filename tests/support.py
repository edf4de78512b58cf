"""Helpers shared by every test session: free ports, isolated settings, the real `inv`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from tasks.core.ports import free_port  # noqa: F401 (tests import it from here)

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def isolated_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """An environment whose stack state (ports, PID file, logs, compose project) is the test's own."""
    env = dict(os.environ)
    env.update(
        MLX_PORT=str(free_port()),
        CORTEX_RUN_DIR=str(tmp_path / "run"),
        CORTEX_LOG_DIR=str(tmp_path / "logs"),
        CORTEX_COMPOSE_PROJECT=f"cortex-test-{os.getpid()}",
        PYTHONUNBUFFERED="1",
    )
    env.pop("CORTEX_MLX_PORT", None)
    env.update(overrides)
    return env


def inv(*args: str, env: dict[str, str] | None = None, timeout: float = 600,
        input: str | None = None) -> subprocess.CompletedProcess:
    """Run the real invoke program on this repo's tasks.py."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout, input=input,
    )


# Written with urllib, independently of tasks/core/local_http.py, for the same reason as below.
def health(port: int, timeout: float = 3) -> tuple[int | None, dict | None]:
    """GET /health on loopback, never through a proxy: (its status, or None when nothing
    answers; its JSON body on 200, else None)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}/health", timeout=timeout) as resp:
            status = resp.status
            try:
                return status, json.loads(resp.read())
            except ValueError:
                return status, None
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except OSError:
        return None, None


# Process checks written independently of tasks/host/process_groups.py, so the tests do not
# trust the code they are checking.
def process_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def live_group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    import psutil

    found = []
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                found.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return found


def remove_services(env: dict[str, str], *services: str) -> None:
    """Remove a module's extra containers when it is done: `inv health` rightly counts a
    stopped container as unhealthy, and one `inv start` started that is gone as well, so the
    services leave the start's record too (tasks/stack/started_record.py)."""
    from tasks.core.settings import load_settings
    from tasks.stack.engine import find_engine
    from tasks.stack.project import make_stack
    from tasks.stack.started_record import forget_started
    settings = load_settings(environ=env)
    stack = make_stack(settings, find_engine(env), offline=True)
    subprocess.run(stack.compose.argv("rm", "--stop", "--force", *services), env=env,
                   capture_output=True, timeout=180)
    forget_started(settings, services)


def bridge_gateway() -> str:
    """The host's address on Docker's bridge: where a test's own server is reached from the
    project's containers (host.docker.internal)."""
    from tasks.host.bind_addresses import docker_bridge_gateway
    address = docker_bridge_gateway()
    assert address, "no Docker bridge address on this host: containers cannot reach it"
    return address


class QuietHandler(BaseHTTPRequestHandler):
    """The request handler of a test's own small HTTP server: `reply` answers with a body
    (JSON by default), and nothing is logged to the test's output."""

    def reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass
