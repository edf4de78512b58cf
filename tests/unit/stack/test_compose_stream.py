"""Compose output streamed to a reader that went away (`inv stop 2>&1 | head -1`): the
command still finishes, and no thread prints a traceback."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.support import REPO_ROOT

# A stand-in for the engine's compose command (an argv prefix, as Engine.compose is): a real
# program writing many lines, then leaving a mark that it ran to the end.
DRIVER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from tasks.stack.compose import Compose
    from tasks.stack.engine import Engine

    mark = Path(sys.argv[1])
    script = 'for i in $(seq 1 2000); do echo "container $i stopped"; done; echo done > "$MARK"'
    engine = Engine("podman", "sh", ("sh", "-c", script, "compose"))
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    stream = os.fdopen(write_end, "w")
    Compose(engine, "p", mark.parent, [], env=dict(os.environ, MARK=str(mark))).run(
        "stop", stream=stream)
    print("returned", flush=True)
""")


def test_a_closed_reader_neither_stops_compose_nor_prints_a_traceback(tmp_path):
    mark = tmp_path / "finished"
    done = subprocess.run([sys.executable, "-c", DRIVER, str(mark)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "returned"
    assert mark.read_text().strip() == "done"
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
