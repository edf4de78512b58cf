"""`inv mlx ACTION` (the seed's spelling) reaches the same tasks as `inv mlx.ACTION`."""
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


def test_short_f_follows_logs_not_foreground():
    help_text = inv("--help", "mlx.run").stdout
    assert "-f, --follow" in help_text


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
