"""`inv mlx install --blas mkl`: what the service venv is given, and that it remembers it."""
from __future__ import annotations

import json

import pytest

from tasks.host.service_venv import (EXTRAS_FILE, saved_extras, service_install_steps,
                                wanted_extras)
from tasks.core.venvs import VenvError
from tests.support import REPO_ROOT, inv


def test_mkl_is_one_more_install_step_with_its_dependencies():
    base = service_install_steps(REPO_ROOT)
    with_mkl = service_install_steps(REPO_ROOT, ("mkl",))
    assert with_mkl[:len(base)] == base and len(with_mkl) == len(base) + 1
    extra = with_mkl[-1]
    assert extra.pip_args == ()  # intel-openmp and tbb come with it
    assert "mkl==" in extra.requirements.read_text()


def test_the_choice_is_added_kept_and_dropped():
    assert wanted_extras((), "mkl", "linux", "x86_64") == ("mkl",)
    assert wanted_extras(("mkl",), None, "linux", "x86_64") == ("mkl",)   # a later plain install
    assert wanted_extras(("mkl",), "mkl", "linux", "x86_64") == ("mkl",)
    assert wanted_extras(("mkl",), "default", "linux", "x86_64") == ()


@pytest.mark.parametrize("blas, system, machine, message", [
    ("openblass", "linux", "x86_64", "is not one of mkl, default"),
    ("mkl", "linux", "aarch64", "x86-64 Linux"),
    ("mkl", "darwin", "arm64", "x86-64 Linux"),
])
def test_bad_choices_are_one_sentence(blas, system, machine, message):
    with pytest.raises(VenvError, match=message):
        wanted_extras((), blas, system, machine)


def test_the_venv_remembers_its_extras(tmp_path):
    assert saved_extras(tmp_path) == ()
    (tmp_path / EXTRAS_FILE).write_text(json.dumps({"blas": ["mkl", "unknown"]}))
    assert saved_extras(tmp_path) == ("mkl",)
    (tmp_path / EXTRAS_FILE).write_text("{broken")
    assert saved_extras(tmp_path) == ()


def test_inv_refuses_an_unknown_blas_before_touching_the_venv(tmp_path):
    venv = tmp_path / "venv"
    done = inv("mlx.install", "--blas", "openblass", "--venv", str(venv), "--create")
    assert done.returncode == 1
    assert "--blas 'openblass' is not one of mkl, default" in done.stderr
    assert "Traceback" not in done.stderr and not venv.exists()
