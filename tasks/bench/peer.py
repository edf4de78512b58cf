"""The yardstick's venv: sentence-transformers on torch CPU (.venvs/peer-st), never a project
dependency; created by `inv bench --setup-peer` from tasks/bench/data/peer-requirements*.txt."""
from __future__ import annotations

from pathlib import Path

from tasks.core.say import Say, quiet
from tasks.core.venvs import InstallStep, ensure_venv, venv_python

PEER_VENV = Path(".venvs") / "peer-st"
PEER_REQUIREMENTS = Path("tasks") / "bench" / "data" / "peer-requirements.txt"
PEER_REQUIREMENTS_NODEPS = Path("tasks") / "bench" / "data" / "peer-requirements-nodeps.txt"


def peer_python(root: Path, peer_venv: Path | None = None) -> Path:
    return venv_python(Path(peer_venv) if peer_venv else root / PEER_VENV)


def setup_peer(root: Path, peer_venv: Path | None = None, say: Say = quiet,
               force: bool = False) -> bool:
    """Create or reuse the peer venv (sentence-transformers on torch CPU); True when pip ran."""
    path = Path(peer_venv) if peer_venv else root / PEER_VENV
    steps = [InstallStep(root / PEER_REQUIREMENTS),
             InstallStep(root / PEER_REQUIREMENTS_NODEPS, ("--no-deps",))]
    return ensure_venv(path, steps, say=say, force=force)
