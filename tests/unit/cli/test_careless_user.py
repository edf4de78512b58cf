"""Issue 17: every setting, file and flag a user can get wrong is one line naming it and a
non-zero exit from the real `inv`, before anything starts; never a traceback.

Rows 7 (logs/ not writable), 8 (a broken .env.dev), 10 (--tail / -n), 11 (--timeout -1, nan,
inf) and 12's tasks half (MLX_HOST, MLX_LOG_LEVEL, EMBEDDINGS_DIM named as the user set them).
Nothing here needs the model, the service's venv or a container: each refusal comes first.
"""
from __future__ import annotations

import json
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, inv, isolated_env


def one_line_refusal(done: subprocess.CompletedProcess, *names: str) -> str:
    """The refusal: non-zero, no traceback, and one line on stderr that names each of `names`."""
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    for name in names:
        assert name in lines[0], done.stderr
    return lines[0]


def nothing_started(env: dict[str, str]) -> None:
    run_dir = Path(env["CORTEX_RUN_DIR"])
    assert not (run_dir / "mlx-server.pid").exists()
    log = Path(env["CORTEX_LOG_DIR"]) / "mlx-server.log"
    assert not log.exists() or "inv mlx start" not in log.read_text()


# --- row 11: --timeout -1 / nan / inf ------------------------------------------------------------

@pytest.mark.parametrize("value", ["-1", "nan", "inf", "0"])
def test_a_timeout_that_cannot_be_waited_is_refused_before_starting(tmp_path, value):
    env = isolated_env(tmp_path)
    done = inv("mlx", "start", "--no-install", f"--timeout={value}", env=env, timeout=120)
    assert done.returncode == 2
    one_line_refusal(done, "--timeout", repr(value))
    nothing_started(env)


@pytest.mark.parametrize("args", [["--mlx-timeout=nan"], ["--mlx-flag=--timeout=-1"],
                                  ["--timeout=inf"]])
def test_inv_start_refuses_the_same_timeouts(tmp_path, args):
    env = isolated_env(tmp_path)
    done = inv("start", "--no-install", "--services=nats", *args, env=env, timeout=120)
    assert done.returncode == 2
    one_line_refusal(done, "timeout")
    nothing_started(env)


@pytest.mark.parametrize("name, value", [("MLX_WAIT_TIMEOUT", "inf"),
                                         ("MLX_WAIT_TIMEOUT", "-5"),
                                         ("CORTEX_READY_TIMEOUT", "nan")])
def test_a_timeout_setting_is_refused_by_name(tmp_path, name, value):
    env = isolated_env(tmp_path, **{name: value})
    done = inv("start", "--no-install", "--services=nats", env=env, timeout=120)
    one_line_refusal(done, f"{name}={value!r}")
    nothing_started(env)


# --- row 10: --tail and -n -----------------------------------------------------------------------

@pytest.mark.parametrize("args, flag", [
    (["logs", "model-gateway", "--tail", "abc"], "--tail 'abc'"),
    (["logs", "--tail", "-5"], "--tail '-5'"),
    (["mlx", "logs", "-n", "abc"], "-n 'abc'"),
    (["mlx.logs", "-n", "-1"], "-n '-1'"),
])
def test_a_line_count_that_is_not_one_is_one_line(tmp_path, args, flag):
    done = inv(*args, env=isolated_env(tmp_path), timeout=120)
    assert done.returncode == 2
    one_line_refusal(done, flag)


@pytest.mark.parametrize("args, flag", [
    (["roundtrip", "--timeout", "abc"], "--timeout 'abc'"),   # invoke's float(): a traceback
    (["mlx", "stop", "--grace", "-1"], "--grace '-1'"),
    (["stress", "--fuzz", "-1"], "--fuzz '-1'"),
    (["bench", "--repeats", "x"], "--repeats 'x'"),
])
def test_other_number_flags_are_one_line(tmp_path, args, flag):
    done = inv(*args, env=isolated_env(tmp_path), timeout=120)
    assert done.returncode == 2
    one_line_refusal(done, flag)


# --- row 8: a line of .env.dev that is not NAME=value ----------------------------------------------

GARBAGE = "this is garbage line\n"


def broken_env_file(tmp_path: Path, line: str) -> tuple[Path, int]:
    text = (REPO_ROOT / ".env.dev").read_text()
    if not text.endswith("\n"):
        text += "\n"
    path = tmp_path / "broken.env"
    path.write_text(text + line)
    return path, text.count("\n") + 1


@pytest.mark.parametrize("args", [["status"], ["status", "--json"], ["health"], ["stop"],
                                  ["start", "--no-install", "--services=nats"],
                                  ["mlx", "start", "--no-install"], ["mlx", "status"],
                                  ["logs", "nats"], ["roundtrip"]])
def test_every_task_names_the_file_and_line_of_a_broken_env_file(tmp_path, args):
    path, number = broken_env_file(tmp_path, GARBAGE)
    env = isolated_env(tmp_path, CORTEX_ENV_FILE=str(path))
    done = inv(*args, env=env, timeout=120)
    one_line_refusal(done, f"{path}, line {number}", "this is garbage line")
    assert done.stdout == ""  # not a status with every container "absent"
    nothing_started(env)


def test_a_nul_byte_in_the_env_file_is_named_not_a_traceback(tmp_path):
    path, number = broken_env_file(tmp_path, "CORTEX_API_PORT=80\x0080\n")
    env = isolated_env(tmp_path, CORTEX_ENV_FILE=str(path))
    for args in (["start", "--no-install", "--services=nats"], ["status"]):
        done = inv(*args, env=env, timeout=120)
        one_line_refusal(done, f"{path}, line {number}", "NUL")


def test_a_reference_compose_would_refuse_is_named_before_compose(tmp_path):
    """`X=${Y` is text to python-dotenv and "Invalid template" to Compose."""
    path, number = broken_env_file(tmp_path, "CORTEX_GRAFANA_PASSWORD=${ADMIN\n")
    done = inv("start", "--no-install", "--services=nats",
               env=isolated_env(tmp_path, CORTEX_ENV_FILE=str(path)), timeout=120)
    one_line_refusal(done, f"{path}, line {number}", "without its closing }")


def test_verify_fails_on_the_broken_line(tmp_path):
    path, number = broken_env_file(tmp_path, GARBAGE)
    env = isolated_env(tmp_path, CORTEX_ENV_FILE=str(path))
    done = inv("verify", "--json", env=env, timeout=300)
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    failed = [c["detail"] for c in doc["checks"] if c["status"] == "fail"]
    assert any(f"{path}, line {number}" in detail for detail in failed), failed


# --- row 12, the tasks half: the service's settings, named as the user set them -----------------

@pytest.mark.parametrize("name, value", [("MLX_HOST", "bogus.invalid"), ("MLX_HOST", "192.0.2.1"),
                                         ("MLX_LOG_LEVEL", "LOUD"),
                                         ("EMBEDDINGS_DIM", "0"), ("MLX_MAX_BATCH_ITEMS", "0")])
def test_the_service_settings_are_refused_before_a_start(tmp_path, name, value):
    env = isolated_env(tmp_path, **{name: value})
    for args in (["mlx", "start", "--no-install"], ["mlx", "restart", "--no-install"],
                 ["start", "--no-install", "--services=nats"]):
        done = inv(*args, env=env, timeout=120)
        line = one_line_refusal(done, name, value)
        assert "--dim" not in line and "--host" not in line
        nothing_started(env)
    verified = inv("verify", "--json", env=env, timeout=300)
    assert verified.returncode == 1
    failed = [c["detail"] for c in json.loads(verified.stdout)["checks"] if c["status"] == "fail"]
    assert any(name in detail for detail in failed), failed


# --- row 7, the tasks half: logs/ that cannot be written -----------------------------------------

@contextmanager
def immutable(folder: Path):
    """`chattr +i`: not writable even by root (as the issue's user found it)."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["chattr", "+i", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize("args", [["mlx", "start", "--no-install"],
                                  ["mlx", "start", "-f", "--no-install"],
                                  ["start", "--no-install", "--services=nats"]])
def test_a_log_folder_that_cannot_be_written_is_one_line(tmp_path, args):
    env = isolated_env(tmp_path)
    logs = Path(env["CORTEX_LOG_DIR"])
    with immutable(logs):
        done = inv(*args, env=env, timeout=120)
        one_line_refusal(done, str(logs / "mlx-server.log"), "CORTEX_LOG_DIR")
        assert "PermissionError" not in done.stderr
        assert list(logs.iterdir()) == []
    assert not (Path(env["CORTEX_RUN_DIR"]) / "mlx-server.pid").exists()


def test_verify_names_a_log_folder_that_cannot_be_written(tmp_path):
    env = isolated_env(tmp_path)
    with immutable(Path(env["CORTEX_LOG_DIR"])):
        verified = inv("verify", "--json", env=env, timeout=300)
    assert verified.returncode == 1
    failed = [c["detail"] for c in json.loads(verified.stdout)["checks"] if c["status"] == "fail"]
    assert any("CORTEX_LOG_DIR" in detail for detail in failed), failed


# --- whatever else goes wrong inside a task: one line, never a traceback --------------------------

@pytest.mark.parametrize("args", [["mlx", "status"], ["mlx", "stop"]])
def test_a_run_folder_under_a_file_is_one_line(tmp_path, args):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = isolated_env(tmp_path, CORTEX_RUN_DIR=str(blocker / "run"))
    done = inv(*args, env=env, timeout=120)
    assert done.returncode == 1
    one_line_refusal(done, str(blocker / "run"))
    debug = inv(*args, env=dict(env, CORTEX_DEBUG="1"), timeout=120)
    assert "Traceback" in debug.stderr  # for whoever fixes the tasks


def test_several_bad_service_settings_are_named_in_one_refusal(tmp_path):
    env = isolated_env(tmp_path, MLX_BLAS="x", MLX_LOG_LEVEL="LOUD", MLX_PORT="99999")
    done = inv("mlx", "start", "--no-install", env=env, timeout=120)
    line = one_line_refusal(done, "MLX_BLAS='x'", "MLX_LOG_LEVEL='LOUD'", "MLX_PORT=99999")
    assert done.returncode == 2 and line.count("MLX_PORT") == 1, line
    nothing_started(env)
