"""The seed's spellings on the command line: `inv mlx ACTION` reaches the same tasks as
`inv mlx.ACTION` (-f is --foreground for start, --follow for logs), `inv logs SERVICE`, and
`inv start --mlx-flag=...` split into lifecycle flags and server arguments."""
import pytest
from invoke import Exit

from tasks.core.flags import MlxFlags, mlx_flags
from tasks.cli.namespace import build_namespace
from tasks.cli.seed_spellings import seed_spellings
from tests.support import inv, isolated_env


def test_mlx_help_lists_every_action(tmp_path):
    done = inv("mlx", "--help", env=isolated_env(tmp_path))
    assert done.returncode == 0
    for action in ("install", "start", "stop", "restart", "status", "logs"):
        assert f"  {action} " in done.stdout


def test_unknown_action_names_the_valid_ones(tmp_path):
    done = inv("mlx", "launch", env=isolated_env(tmp_path))
    assert done.returncode == 2
    assert "unknown action 'launch'" in done.stderr and "restart" in done.stderr


def test_short_f_is_foreground_for_start_and_follow_for_logs():
    help_text = inv("--help", "mlx.run").stdout
    assert "start: --foreground; logs: --follow" in help_text
    assert "-l, --follow" in help_text and "-o, --foreground" in help_text


def test_short_f_on_an_action_without_one_is_one_sentence(tmp_path):
    done = inv("mlx", "stop", "-f", env=isolated_env(tmp_path))
    assert done.returncode == 2
    assert "-f means --foreground for start and --follow for logs" in done.stderr
    assert "Traceback" not in done.stderr


def test_status_through_both_spellings_agrees(tmp_path):
    env = isolated_env(tmp_path)
    spaced = inv("mlx", "status", "--json", env=env)
    dotted = inv("mlx.status", "--json", env=env)
    assert spaced.returncode == dotted.returncode == 0
    assert '"running": false' in spaced.stdout and '"running": false' in dotted.stdout
    assert spaced.stdout.replace(" ", "")[:40] == dotted.stdout.replace(" ", "")[:40]


def test_logs_when_nothing_was_logged_yet(tmp_path):
    done = inv("mlx", "logs", "-n", "3", env=isolated_env(tmp_path))
    assert done.returncode == 0 and "no log yet" in done.stderr


# --- inv logs SERVICE ----------------------------------------------------------------------------

@pytest.fixture
def logged(tmp_path):
    """An isolated environment whose host-service log has 200 numbered lines."""
    env = isolated_env(tmp_path)
    log = tmp_path / "logs" / "mlx-server.log"
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"line {i}\n" for i in range(1, 201)))
    return env


@pytest.mark.parametrize("argv", [
    ("logs", "mlx", "--tail", "2"),
    ("logs", "--tail", "2", "mlx"),
    ("logs", "-t", "2", "mlx-server"),
    ("logs", "-s", "mlx", "--tail=2"),          # our own spelling still works
    ("logs", "--service", "mlx", "-t", "2"),
])
def test_logs_names_the_service_as_the_seed_does(logged, argv):
    done = inv(*argv, env=logged, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["line 199", "line 200"]


def test_logs_of_an_unknown_service_names_the_valid_ones(logged):
    done = inv("logs", "natz", env=logged, timeout=60)
    assert done.returncode == 1
    assert "Unknown service 'natz'" in done.stderr and "model-gateway" in done.stderr
    assert "No idea what" not in done.stderr


def test_logs_help_and_the_task_list_are_unchanged(logged):
    helped = inv("logs", "--help", env=logged)
    assert helped.returncode == 0 and "inv logs SERVICE" in helped.stdout
    # -s is repeatable (issue 17 row 10: `inv logs -s mlx -s nats`); invoke lists such a flag
    # without a value name.
    assert "-s, --service" in helped.stdout and "repeatable" in helped.stdout
    assert "-f, --follow" in helped.stdout
    listed = inv("--list", env=logged)
    assert listed.returncode == 0 and "  logs " in listed.stdout


@pytest.fixture(scope="module")
def contexts():
    return build_namespace().to_contexts()


@pytest.mark.parametrize("tokens, expected", [
    (["logs", "model-gateway", "-f"], ["logs", "--service=model-gateway", "-f"]),
    (["logs", "-f", "mlx"], ["logs", "-f", "--service=mlx"]),
    (["logs", "--tail", "5", "nats"], ["logs", "--tail", "5", "--service=nats"]),
    (["logs", "-ft", "5", "nats"], ["logs", "-ft", "5", "--service=nats"]),
    (["logs", "-t5", "nats"], ["logs", "-t5", "--service=nats"]),
    (["logs"], ["logs"]),
    (["logs", "-s", "nats", "-f"], ["logs", "-s", "nats", "-f"]),
    (["logs", "health"], ["logs", "health"]),                 # another task: invoke's meaning
    (["logs", "nats", "health"], ["logs", "--service=nats", "health"]),
    (["mlx", "logs", "-n", "3"], ["mlx", "logs", "-n", "3"]),  # mlx's action, not `inv logs`
    (["start", "--services", "nats", "logs", "mlx"],
     ["start", "--services", "nats", "logs", "--service=mlx"]),
    (["logs", "--", "nats"], ["logs", "--", "nats"]),
    # several services (issue 17 row 10); a word naming nothing is refused as a service
    (["logs", "mlx", "nats", "-t", "3"], ["logs", "--service=mlx", "--service=nats", "-t", "3"]),
    (["logs", "mlx", "natz"], ["logs", "--service=mlx", "--service=natz"]),
])
def test_the_word_after_logs_becomes_the_service(contexts, tokens, expected):
    assert seed_spellings(tokens, contexts) == expected


# --- inv start --mlx-flag --------------------------------------------------------------------------

def test_lifecycle_flags_are_split_from_server_arguments():
    assert mlx_flags(["--no-wait", "--timeout=30", "--venv=/v", "--dim=128"]) == MlxFlags(
        wait=False, timeout=30.0, venv="/v", server_args=("--dim=128",))
    assert mlx_flags(["--timeout", "30", "--venv", "/v", "--dim", "64"]) == MlxFlags(
        timeout=30.0, venv="/v", server_args=("--dim", "64"))
    assert mlx_flags([], venv="/w", timeout=5.0) == MlxFlags(timeout=5.0, venv="/w")
    assert mlx_flags(["--timeout=5"], timeout=5.0).timeout == 5.0


@pytest.mark.parametrize("values, kwargs, says", [
    (["--timeout=soon"], {}, "--mlx-flag=--timeout 'soon' is not a number of seconds"),
    (["--venv"], {}, "--mlx-flag=--venv needs a value"),
    (["--timeout=30"], {"timeout": 60.0}, "--mlx-timeout=60 and --mlx-flag=--timeout=30 disagree"),
    (["--venv=/a"], {"venv": "/b"}, "--mlx-venv=/b and --mlx-flag=--venv=/a disagree"),
    (["-f"], {}, "`inv mlx start -f` runs it in the foreground"),
])
def test_bad_mlx_flags_are_one_sentence(values, kwargs, says):
    with pytest.raises(Exit) as caught:
        mlx_flags(values, **kwargs)
    assert caught.value.code == 2 and says in caught.value.message


def test_a_bad_mlx_flag_stops_inv_start_before_anything_runs(tmp_path):
    done = inv("start", "--mlx-flag=--timeout=soon", env=isolated_env(tmp_path), timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --mlx-flag=--timeout 'soon' is not a number of seconds"
