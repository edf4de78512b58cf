"""The tokenizer kept between starts (mlx_service/models/tokenizer_cache.py) is the one
transformers builds, and a start that finds it imports neither transformers nor mlx-vlm
(mlx_service/models/library.py): the 1.3-1.5 s they cost is most of a cold start.

Each step runs in a fresh process of the service's venv, as a start would.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.support import FIXTURES, REPO_ROOT

TINY = FIXTURES / "tiny-models"
TEXTS = ["Hello WORLD, naïve café", "東京 and 😀", "  spaced\tout\nlines  ", "x" * 150]

LOAD = r"""
import json, sys
from pathlib import Path
from mlx_service.models.tokenizer_cache import load_tokenizer
texts = json.loads(sys.argv[2])
loaded = load_tokenizer(Path(sys.argv[1]))
loaded.backend.no_padding()  # as BoundedTokenizer does: the file's own settings are not ours
loaded.backend.no_truncation()
ids = [e.ids for e in loaded.backend.encode_batch(texts)]
from transformers import AutoTokenizer  # the truth, imported only after the load was judged
hf = AutoTokenizer.from_pretrained(sys.argv[1])
want = hf(texts, truncation=False)["input_ids"]
print(json.dumps({"cached": loaded.cached, "pad_id": loaded.pad_id, "want_pad": hf.pad_token_id,
                  "ids": ids, "want": [list(w) for w in want]}))
"""

EMBED = r"""
import json, sys
from mlx_service.models.embedder import Embedder
from mlx_service.models.folder import read_spec
import numpy as np
name = sys.argv[1]
ref = json.load(open("tests/fixtures/tiny-models/reference.json"))
embedder = Embedder(read_spec("tests/fixtures/tiny-models/" + name), precision="fp32")
vectors = embedder.embed(embedder.tokenize(ref["texts"]))
want = np.array(ref["models"][name]["embeddings"], dtype=np.float32)
cos = float(np.min(np.sum(vectors * want, axis=1) / np.linalg.norm(want, axis=1)))
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"transformers", "mlx_vlm", "huggingface_hub"})
print(json.dumps({"cached": embedder.tokenizer_cached, "heavy": heavy, "min_cos": cos}))
"""


def run(service_py, script: str, *args: str, cache) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               MLX_TOKENIZER_CACHE=str(cache), PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run([str(service_py), "-c", script, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_kept_tokenizer_is_transformers_own_and_follows_edits(service_py, tmp_path):
    folder = tmp_path / "bert-cls"
    shutil.copytree(TINY / "bert-cls", folder)
    cache = tmp_path / "cache"
    texts = json.dumps(TEXTS)

    first = run(service_py, LOAD, str(folder), texts, cache=cache)
    assert first["cached"] is False and len(list(cache.glob("*.json"))) == 1
    second = run(service_py, LOAD, str(folder), texts, cache=cache)
    assert second["cached"] is True
    for got in (first, second):
        assert got["ids"] == got["want"] and got["pad_id"] == got["want_pad"]

    # transformers builds a BERT tokenizer from tokenizer_config.json's do_lower_case, not
    # from tokenizer.json's normalizer: an edit there must not be served from the old entry.
    config = folder / "tokenizer_config.json"
    settings = json.loads(config.read_text())
    settings["do_lower_case"] = False
    config.write_text(json.dumps(settings))
    edited = run(service_py, LOAD, str(folder), texts, cache=cache)
    assert edited["cached"] is False
    assert edited["ids"] == edited["want"] and edited["ids"][0] != first["ids"][0]

    # A damaged entry is built again, not fatal.
    for entry in cache.glob("*.json"):
        entry.write_text("{not json")
    damaged = run(service_py, LOAD, str(folder), texts, cache=cache)
    assert damaged["cached"] is False and damaged["ids"] == damaged["want"]


@pytest.mark.parametrize("name", ["bert-cls", "xlmr-mean", "modernbert-mean", "qwen3-last"])
def test_a_start_with_the_kept_tokenizer_imports_no_transformers(service_py, tmp_path, name):
    cache = tmp_path / "cache"
    cold = run(service_py, EMBED, name, cache=cache)
    warm = run(service_py, EMBED, name, cache=cache)
    assert cold["cached"] is False and warm["cached"] is True
    assert warm["heavy"] == [], f"a warm start still imports {warm['heavy']}"
    assert cold["min_cos"] >= 0.9999 and warm["min_cos"] >= 0.9999
