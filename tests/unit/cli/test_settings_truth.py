"""Issue 28, the settings rows: what the real `inv` says of a setting, a flag or a line of
.env.dev it cannot use, and what `inv verify` lists.

Rows 7 (exit 2 for every setting a task cannot use), 8 (Compose's rule for the project name),
9 (a dimension larger than the model's, a server flag the service does not take), 10 (verify
goes on past a bad line of .env.dev), 11 (a name set twice) and 17 (--venv outside the
checkout that does not exist). Nothing here needs a running service or a container: each
refusal comes before anything starts.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import FIXTURES, REPO_ROOT, inv, isolated_env
from tests.unit.cli.test_careless_user import nothing_started, one_line_refusal


def verify_doc(env: dict[str, str]) -> dict:
    done = inv("verify", "--json", env=env, timeout=300)
    doc = json.loads(done.stdout)
    assert done.returncode == (0 if doc["ok"] else 1), done.stderr
    return doc


def details(doc: dict, status: str) -> list[str]:
    return [c["detail"] for c in doc["checks"] if c["status"] == status]


# --- rows 7 and 8: a stack setting is exit 2, named, before anything starts ----------------------

@pytest.mark.parametrize("name, value, words", [
    ("CORTEX_IMAGES", "bogus", ["CORTEX_IMAGES='bogus'", "auto, local, upstream"]),
    ("CORTEX_ENGINE", "dockr", ["CORTEX_ENGINE='dockr'"]),
    ("CORTEX_COMPOSE_OVERRIDES", "/nonexistent/override.yml", ["CORTEX_COMPOSE_OVERRIDES"]),
    ("MLX_LOCK_TIMEOUT", "soon", ["MLX_LOCK_TIMEOUT='soon'"]),
    ("CORTEX_COMPOSE_PROJECT", "Bad Name!",
     ["CORTEX_COMPOSE_PROJECT='Bad Name!'", "lowercase letters, digits, dashes and underscores",
      "starting with a letter or digit"]),
])
def test_a_stack_setting_a_task_cannot_use_is_exit_2_and_listed_by_verify(tmp_path, name, value,
                                                                          words):
    env = isolated_env(tmp_path, **{name: value})
    done = inv("start", "--no-install", "--services=nats", env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    line = one_line_refusal(done, *words)
    assert "did not start" not in line  # said as the setting, not as a failed start
    nothing_started(env)
    failed = details(verify_doc(env), "fail")
    assert any(all(w in d for w in words) for d in failed), failed


def test_verify_passes_the_project_names_compose_takes(tmp_path):
    for good in ("cortex", "cortex-test_2", "9lives"):
        doc = verify_doc(isolated_env(tmp_path, CORTEX_COMPOSE_PROJECT=good))
        assert not any("CORTEX_COMPOSE_PROJECT" in d for d in details(doc, "fail")), good


# --- rows 10 and 11: .env.dev with a bad line, or a name set twice -------------------------------

def env_file_with(tmp_path: Path, *lines: str) -> tuple[Path, int]:
    """The repo's .env.dev plus `lines`; returns the file and the number of its first added line."""
    text = (REPO_ROOT / ".env.dev").read_text()
    text += "" if text.endswith("\n") else "\n"
    path = tmp_path / "test.env"
    path.write_text(text + "".join(line + "\n" for line in lines))
    return path, text.count("\n") + 1


def test_verify_runs_every_other_check_past_a_bad_line_with_the_good_lines(tmp_path):
    path, first = env_file_with(tmp_path, "this is garbage line", "CORTEX_READY_TIMEOUT=nan")
    doc = verify_doc(isolated_env(tmp_path, CORTEX_ENV_FILE=str(path)))
    assert not doc["ok"]
    failed = details(doc, "fail")
    assert any(f"{path}, line {first}" in d and "this is garbage line" in d for d in failed)
    # The line after it was read: its bad value is named by the settings check.
    assert any("CORTEX_READY_TIMEOUT='nan'" in d for d in failed), failed
    names = {c["name"] for c in doc["checks"]}
    # Checks after the bad line ran too ("model" needs the service venv: the service session).
    assert {"os", "python", "tooling", "disk", "service venv"} <= names, names
    assert any(name.startswith("port mlx") for name in names), names
    assert len(doc["checks"]) > 10


def test_a_task_still_refuses_the_bad_line(tmp_path):
    path, first = env_file_with(tmp_path, "this is garbage line")
    env = isolated_env(tmp_path, CORTEX_ENV_FILE=str(path))
    done = inv("start", "--no-install", "--services=nats", env=env, timeout=120)
    assert done.returncode == 2
    one_line_refusal(done, f"{path}, line {first}")


def test_verify_names_a_name_set_twice(tmp_path):
    path, first = env_file_with(tmp_path, "CORTEX_API_PORT=18080", "", "CORTEX_API_PORT=18090")
    doc = verify_doc(isolated_env(tmp_path, CORTEX_ENV_FILE=str(path)))
    earlier = (REPO_ROOT / ".env.dev").read_text().splitlines().index("CORTEX_API_PORT=8080") + 1
    warned = details(doc, "warn")
    assert any("CORTEX_API_PORT" in d and f"lines {earlier}, {first} and {first + 2}" in d
               and str(path) in d for d in warned), warned
    ports = [c for c in doc["checks"] if c["name"] == "port api (18090)"]
    assert ports, "the last line wins, as in Compose"


def test_a_file_without_duplicates_has_no_such_warning(tmp_path):
    path, _ = env_file_with(tmp_path)
    doc = verify_doc(isolated_env(tmp_path, CORTEX_ENV_FILE=str(path)))
    assert not any("is set on lines" in d for d in details(doc, "warn"))


# --- row 9: a dimension larger than the model's, a flag the service does not take ---------------

TINY_BERT = FIXTURES / "tiny-models" / "bert-cls"  # 64 dimensions


# The bundled model's dimension is read from its package in the service venv: those two cases
# are in tests/service/cli/test_dimension_refused.py.
@pytest.mark.parametrize("env_over, args, words", [
    ({"EMBEDDINGS_DIM": "65", "EMBEDDINGS_MODEL": str(TINY_BERT)}, [],
     ["EMBEDDINGS_DIM=65", "64 dimensions", "bert-cls"]),
    ({}, ["--mlx-flag=--bogus"], ["--mlx-flag=--bogus", "not a flag of the host service"]),
    ({}, ["--mlx-flag=--blas=fastest"], ["--blas", "'fastest'"]),
])
def test_what_the_service_would_refuse_is_refused_before_a_launch(tmp_path, env_over, args,
                                                                  words):
    env = isolated_env(tmp_path, **env_over)
    done = inv("start", "--no-install", "--services=nats", *args, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    one_line_refusal(done, *words)
    nothing_started(env)
    if not args:  # a setting, not a flag of one run: verify lists it too
        assert any(all(w in d for w in words) for d in details(verify_doc(env), "fail"))
        again = inv("mlx", "start", "--no-install", env=env, timeout=120)
        assert again.returncode == 2
        one_line_refusal(again, *words)


def test_the_models_own_dimension_and_fewer_are_accepted(tmp_path):
    for dim in ("64", "32"):
        env = isolated_env(tmp_path, EMBEDDINGS_DIM=dim, EMBEDDINGS_MODEL=str(TINY_BERT))
        failed = details(verify_doc(env), "fail")
        assert not any("EMBEDDINGS_DIM" in d for d in failed), failed


# --- row 17: --venv outside the checkout that does not exist ------------------------------------

@pytest.mark.parametrize("args", [["mlx", "start", "--venv", "{venv}"],
                                  ["mlx", "install", "--venv", "{venv}"],
                                  ["mlx.restart", "--venv", "{venv}"],
                                  ["start", "--services=nats", "--mlx-flag=--venv={venv}"]])
def test_a_venv_path_that_looks_like_a_typo_is_refused_before_pip(tmp_path, args):
    venv = tmp_path / "nonexistent" / "venv"
    env = isolated_env(tmp_path)
    done = inv(*[a.format(venv=venv) for a in args], env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    one_line_refusal(done, f"--venv {venv}", "--create")
    assert not venv.parent.exists()
    nothing_started(env)


def test_create_asks_for_the_new_venv(tmp_path):
    """With --create the path is taken: the start goes on (here to --no-install's refusal
    of a venv that is not there, which a start with the install would have made)."""
    venv = tmp_path / "nonexistent" / "venv"
    env = isolated_env(tmp_path)
    for args in (["mlx", "start", "--no-install", "--venv", str(venv), "--create"],
                 ["start", "--services=nats", "--no-install", f"--mlx-flag=--venv={venv}",
                  "--mlx-flag=--create"]):
        done = inv(*args, env=env, timeout=120)
        assert done.returncode == 1, done.stderr
        one_line_refusal(done, f"the service venv {venv} does not exist")
