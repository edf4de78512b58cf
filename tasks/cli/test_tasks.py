"""`inv test` and its sessions (unit, service, e2e), organised like nox sessions.

Each session creates or reuses the environment it needs (fingerprinted venvs: reuse costs
a hash), says what it runs, then runs pytest on its own folder of tests/.
"""
from __future__ import annotations

import os
import shlex
import subprocess

from invoke import Collection, Exit, task

from tasks.core.say import say_as
from tasks.core.settings import load_settings
from tasks.core.venvs import InstallStep, VenvError, ensure_venv, venv_python
from tasks.host.service_venv import install_service_venv

SESSIONS = {
    "unit": "parsing, settings, PID files and other logic; no model, no engine",
    "service": "the host service with the real model over real HTTP, and its lifecycle",
    "e2e": "the stack on a real Docker engine: containers, NATS, gateway, status",
}


say = say_as("test")


def prepare_session(name: str) -> str:
    """Ensure the session's environments; return the test interpreter."""
    settings = load_settings()
    test_venv = settings.root / ".venvs" / "test"
    ensure_venv(test_venv, [InstallStep(settings.root / "requirements-test.txt")], say=say)
    if name in ("service", "e2e"):
        install_service_venv(settings, say=say)
    return str(venv_python(test_venv))


def run_session(name: str, pytest_args: str = "") -> int:
    try:
        python = prepare_session(name)
    except VenvError as exc:
        raise Exit(f"test.{name}: its environment could not be made: {exc}", code=1) from None
    say(f"session {name}: {SESSIONS[name]}")
    cmd = [python, "-m", "pytest", f"tests/{name}", "-ra", *shlex.split(pytest_args)]
    say("running " + " ".join(cmd[1:]))
    return subprocess.call(cmd, cwd=load_settings().root, env=os.environ.copy())


def _session_task(name: str):
    @task(name=name, help={"pytest": "extra arguments for pytest, e.g. '-k parity -x'"})
    def session(c, pytest=""):
        code = run_session(name, pytest)
        if code != 0:
            raise Exit(f"test.{name} failed (pytest exit {code})", code=code)

    session.__doc__ = f"Run the {name} tests: {SESSIONS[name]}."
    return session


unit = _session_task("unit")
service = _session_task("service")
e2e = _session_task("e2e")


@task(default=True, help={"pytest": "extra arguments for pytest"})
def all_sessions(c, pytest=""):
    """Run every test session in order: unit, service, e2e."""
    failed = [name for name in SESSIONS if run_session(name, pytest) != 0]
    if failed:
        raise Exit("failed sessions: " + ", ".join(failed), code=1)
    say("all sessions passed: " + ", ".join(SESSIONS))


ns = Collection("test", unit, service, e2e)
ns.add_task(all_sessions, name="all", default=True)
