"""Fixtures for the host service's tests: the service as a real subprocess on a free port.

The helper itself lives in `tests/service_support.py`, so that other sessions' tests can
start a service too. `service`: one per session, shared by most tests.
`service_factory`: a service of the test's own, stopped (SIGTERM) when the test ends.
"""
from __future__ import annotations

import json

import pytest

from tasks.core.settings import load_settings
from tasks.host.service_venv import service_python
from tests.service_support import ServiceProcess, spawn_service
from tests.support import FIXTURES

# Small limits for the shared service, so the limit tests stay fast.
SESSION_LIMITS = {"MLX_MAX_BATCH_ITEMS": "64", "MLX_MAX_REQUEST_BYTES": "65536"}


@pytest.fixture(scope="session")
def service_py():
    return service_python(load_settings())


@pytest.fixture(scope="session")
def reference():
    return json.loads((FIXTURES / "minilm-reference.json").read_text())


@pytest.fixture(scope="session")
def service(tmp_path_factory, service_py):
    svc = spawn_service(tmp_path_factory.mktemp("service"), env=SESSION_LIMITS, python=service_py)
    yield svc
    code = svc.stop()
    assert code == 0, f"service exited {code} on SIGTERM:\n{svc.log()[-2000:]}"


@pytest.fixture(scope="session")
def roomy(tmp_path_factory, service_py):
    """A service with the default limits (the shared one caps bodies at 64 KiB)."""
    svc = spawn_service(tmp_path_factory.mktemp("roomy"), python=service_py)
    yield svc
    svc.stop()


@pytest.fixture
def service_factory(tmp_path, service_py):
    started: list[ServiceProcess] = []

    def factory(*args: str, **kwargs) -> ServiceProcess:
        kwargs.setdefault("python", service_py)
        svc = spawn_service(tmp_path / f"svc{len(started)}", *args, **kwargs)
        started.append(svc)
        return svc

    yield factory
    for svc in started:
        svc.stop()
