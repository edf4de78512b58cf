"""Which model the bench runs: the bundled one, a folder (`inv bench --model FOLDER`), or a
full-width, few-layer random model of a published shape (`--random-model NAME`), built by
tasks/bench/scripts/random_model.py in the service venv (speed does not depend on weights)."""
from __future__ import annotations

import subprocess
from pathlib import Path

from tasks.bench.document import RESULTS_DIR
from tasks.bench.errors import BenchError

RANDOM_MODEL_SCRIPT = Path("tasks") / "bench" / "scripts" / "random_model.py"
# The published shapes random_model.py knows (its SHAPES), for the flag's check and help.
RANDOM_MODELS = ("qwen3-embedding-0.6b", "multilingual-e5-small", "modernbert-base",
                 "all-mpnet-base-v2", "embeddinggemma-300m")


def model_folder(path: str | Path) -> Path:
    """A model folder the bench can hand to the service and the peer, made absolute."""
    folder = Path(path).expanduser().resolve()
    if not (folder / "config.json").is_file():
        raise BenchError(f"--model {path}: no config.json in {folder}")
    return folder


def build_random_model(python: Path, root: Path, name: str) -> Path:
    """Builds (or rebuilds) bench-results/models/NAME; returns the folder."""
    if name not in RANDOM_MODELS:
        raise BenchError(f"--random-model {name!r} is not one of {', '.join(RANDOM_MODELS)}")
    out = Path(root) / RESULTS_DIR / "models" / name
    done = subprocess.run([str(python), str(RANDOM_MODEL_SCRIPT), name, str(out)], cwd=root,
                          capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"building the random {name} model failed: {last}")
    return model_folder(out)


def bench_model(settings, model: str | None, random_model: str | None) -> Path | None:
    """--model / --random-model -> the folder to bench (None: the bundled model)."""
    from tasks.host.service_venv import service_python
    if model and random_model:
        raise BenchError("--model and --random-model name two models: give one")
    if random_model:
        if random_model not in RANDOM_MODELS:
            raise BenchError(f"--random-model {random_model!r} is not one of "
                             f"{', '.join(RANDOM_MODELS)}")
        return build_random_model(service_python(settings), Path(settings.root), random_model)
    return model_folder(model) if model else None
