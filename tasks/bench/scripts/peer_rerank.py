"""The reranking yardstick: sentence-transformers' CrossEncoder.predict on torch CPU, same folder.

Runs in the peer venv (`inv bench --setup-peer`), never a project dependency:

    .venvs/peer-st/bin/python tasks/bench/scripts/peer_rerank.py FOLDER

Speaks worker.py's line protocol (beside this file), so that `inv bench --rerank` interleaves
its repeats with the service's. One `run` is one rerank request: its texts are the query then
the documents (the protocol carries a list of texts), its batch size is their count, and the
seconds timed are one `predict([(query, doc) for doc in documents], batch_size=32)`: a user's
call, with sentence-transformers' own default batch size, length sort and truncation to the
model's max length. Torch keeps its default thread count (one per core), as peer_st.py does.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# worker.py beside this file; nothing from tasks/: the peer venv has only torch and
# sentence-transformers.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from worker import serve  # noqa: E402

BATCH_SIZE = 32  # CrossEncoder.predict's default


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a cross-encoder folder")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    import sentence_transformers
    import torch
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(args.folder), device="cpu")
    load_seconds = time.perf_counter() - started

    def rerank(texts):
        # worker.py hands the whole request over in one call (batch size = its length).
        query, documents = texts[0], texts[1:]
        return model.predict([(query, doc) for doc in documents], batch_size=BATCH_SIZE,
                             show_progress_bar=False)

    info = {
        "engine": "sentence-transformers CrossEncoder",
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "max_length": model.max_seq_length,
        "batch_size": BATCH_SIZE,
        "load_seconds": round(load_seconds, 3),
    }
    serve(rerank, info)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
