"""The rerankers `inv bench --rerank` runs: full-width random cross-encoders of published
shapes, built by tasks/bench/scripts/random_reranker.py in the service venv into
bench-results/models (beside random_model.py's), and reused while what made them is unchanged."""
from __future__ import annotations

import hashlib
from pathlib import Path

from tasks.bench.document import RESULTS_DIR
from tasks.bench.errors import BenchError
from tasks.bench.models import RANDOM_MODEL_SCRIPT, model_folder
from tasks.core.runner import run

RANDOM_RERANKER_SCRIPT = Path("tasks") / "bench" / "scripts" / "random_reranker.py"
FIXTURES = Path("tests") / "fixtures" / "tiny-rerankers"
# Published shape -> the tiny fixture it is built from (random_reranker.py's SHAPES).
RANDOM_RERANKERS = {"ms-marco-minilm-l6": "bert-rerank", "bge-reranker-base": "xlmr-rerank"}
# The published depth of each (bge-reranker-base's folder keeps fewer: compare per layer).
PUBLISHED_LAYERS = {"ms-marco-minilm-l6": 6, "bge-reranker-base": 12}
STAMP = ".built-from"  # in the built folder: the digest of what built it


def build_digest(root: Path, name: str) -> str:
    """What a built folder depends on: both scripts and the fixture's files."""
    digest = hashlib.sha256()
    fixture = Path(root) / FIXTURES / RANDOM_RERANKERS[name]
    for path in (Path(root) / RANDOM_RERANKER_SCRIPT, Path(root) / RANDOM_MODEL_SCRIPT,
                 *sorted(p for p in fixture.iterdir() if p.is_file())):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def reranker_folder(root: Path, name: str) -> Path:
    return Path(root) / RESULTS_DIR / "models" / name


def random_reranker(python: Path, root: Path, name: str) -> tuple[Path, bool]:
    """bench-results/models/NAME, built unless a build from the same scripts and fixture is
    there already; (folder, built now)."""
    if name not in RANDOM_RERANKERS:
        raise BenchError(f"no random reranker {name!r}: {', '.join(RANDOM_RERANKERS)}")
    out, want = reranker_folder(root, name), build_digest(root, name)
    stamp = out / STAMP
    if stamp.is_file() and stamp.read_text().strip() == want:
        return model_folder(out), False
    done = run([str(python), str(RANDOM_RERANKER_SCRIPT), name, str(out)], cwd=str(root))
    if done.exit_code != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"building the random {name} reranker failed: {last}")
    stamp.write_text(want + "\n")
    return model_folder(out), True
