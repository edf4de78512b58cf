"""`inv clean --yes` and `inv stop` act only on what this checkout created (real engine).

Another checkout's Compose project with the same name (a copy of a small compose file in
another directory, on the locally built NATS image) must survive both, with its volume, and
the refusal must name that checkout.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.support import inv, isolated_env

OTHER_COMPOSE = """\
services:
  nats:
    image: cortex-dev/nats:local
    pull_policy: never
    command: ["--jetstream", "--store_dir", "/data"]
    volumes:
      - nats-data:/data
volumes:
  nats-data:
"""


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=180,
                          check=check)


def containers_of(project: str) -> list[dict]:
    ids = docker("ps", "--all", "--quiet", "--filter",
                 f"label=com.docker.compose.project={project}").stdout.split()
    return json.loads(docker("inspect", *ids).stdout) if ids else []


@pytest.fixture
def other_checkout(engine, tmp_path):
    """A running Compose project named like ours, created from another directory."""
    project = f"cortex-owner-{os.getpid()}"
    where = tmp_path / "colleague-checkout"
    where.mkdir()
    (where / "docker-compose.yml").write_text(OTHER_COMPOSE)
    compose = ["compose", "--project-name", project, "--project-directory", str(where),
               "--file", str(where / "docker-compose.yml")]
    docker(*compose, "up", "--detach", "--pull", "never")
    try:
        yield project, where
    finally:
        docker(*compose, "down", "--volumes", "--remove-orphans", check=False)


def _assert_untouched(project: str, where) -> None:
    [container] = containers_of(project)
    assert container["State"]["Status"] == "running"
    labels = container["Config"]["Labels"]
    assert labels["com.docker.compose.project.working_dir"] == str(where)
    volumes = docker("volume", "ls", "--quiet", "--filter",
                     f"label=com.docker.compose.project={project}").stdout.split()
    assert volumes == [f"{project}_nats-data"]


def test_clean_and_stop_refuse_a_project_of_another_checkout(other_checkout, tmp_path):
    project, where = other_checkout
    env = isolated_env(tmp_path, CORTEX_COMPOSE_PROJECT=project, CORTEX_IMAGES="local")

    clean = inv("clean", "--yes", env=env, timeout=300)
    assert clean.returncode != 0, clean.stderr
    assert str(where) in clean.stderr and project in clean.stderr
    assert "Traceback" not in clean.stderr
    _assert_untouched(project, where)

    stop = inv("stop", env=env, timeout=300)
    assert stop.returncode != 0, stop.stderr
    assert str(where) in stop.stderr and "Traceback" not in stop.stderr
    _assert_untouched(project, where)


def test_clean_removes_what_this_checkout_created(engine, tmp_path):
    # The control: containers whose working directory is this checkout's compose folder are
    # ours, so clean removes them (and the project's volume) and exits 0.
    from tasks.core.settings import load_settings
    project = f"cortex-owner-mine-{os.getpid()}"
    env = isolated_env(tmp_path, CORTEX_IMAGES="local", CORTEX_COMPOSE_PROJECT=project)
    (tmp_path / "small.yml").write_text(OTHER_COMPOSE)
    compose = ["compose", "--project-name", project, "--project-directory",
               str(load_settings(environ=env).compose_dir), "--file", str(tmp_path / "small.yml")]
    docker(*compose, "up", "--detach", "--pull", "never")
    try:
        assert len(containers_of(project)) == 1
        clean = inv("clean", "--yes", env=env, timeout=300)
        assert clean.returncode == 0, clean.stderr
        assert containers_of(project) == []
        assert docker("volume", "ls", "--quiet", "--filter",
                      f"label=com.docker.compose.project={project}").stdout.split() == []
    finally:
        docker(*compose, "down", "--volumes", "--remove-orphans", check=False)
