"""One way to run a program (issue 20): captured short programs go through tasks.core.runner,
whose `Finished.check` turns a failure into the caller's error; subprocess is left to the
modules that supervise a child."""
from __future__ import annotations

import sys

import pytest

from tasks.core import output_text, runner
from tests.support import REPO_ROOT

# Modules that start a child they supervise (the host service, the bench's services and
# scripts, pytest in the foreground): subprocess.Popen/call stays there.
SUPERVISORS = {"tasks/host/mlx_detached.py", "tasks/host/mlx_attached.py",
               "tasks/bench/engines.py", "tasks/bench/models.py", "tasks/bench/run.py",
               "tasks/cli/test_tasks.py"}


class Refused(Exception):
    pass


def test_only_supervisors_import_subprocess():
    found = {str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "tasks").rglob("*.py")
             if "bench/scripts" not in str(p) and "import subprocess" in p.read_text()}
    assert found <= SUPERVISORS, found - SUPERVISORS


def test_check_names_the_program_and_its_last_lines(tmp_path):
    done = runner.run([sys.executable, "-c",
                       "import sys; print('building'); sys.exit('no space left')"], cwd=tmp_path)
    with pytest.raises(Refused) as caught:
        done.check(Refused, "`build`")
    assert str(caught.value) == "`build` failed (exit 1): no space left"
    quiet = runner.run([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(Refused, match=r"failed \(exit 3\): it printed nothing"):
        quiet.check(Refused, "`x`")
    with pytest.raises(Refused, match="its output is above"):
        quiet.check(Refused, "`x`", streamed=True)


def test_check_says_a_program_ran_out_of_time():
    done = runner.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    with pytest.raises(Refused, match="`sleep` did not finish within 0.5 seconds"):
        done.check(Refused, "`sleep`")


def test_a_finished_program_passes_its_check(tmp_path):
    done = runner.run([sys.executable, "-c", "import os; print(os.getcwd())"], cwd=tmp_path)
    assert done.check(Refused, "`pwd`") is done and done.stdout.strip() == str(tmp_path)


def test_one_way_to_read_a_programs_bytes():
    assert runner.as_text is output_text.as_text
    assert output_text.as_text(b"caf\xc3\xa9 \xff") == "café \ufffd"
