"""Truncation is exact and bounded: a text is tokenized only as far as max_seq_length needs,
and its vector is still sentence-transformers' own (tests/fixtures/minilm-huge-texts.json:
each text built from its `parts`, vectors from sentence-transformers)."""
from __future__ import annotations

import json
import subprocess

import pytest

from tasks.checks.roundtrip import cosine
from tests.support import FIXTURES, REPO_ROOT

HUGE = json.loads((FIXTURES / "minilm-huge-texts.json").read_text())


def build(case) -> str:
    return "".join(piece * count for piece, count in case["parts"])


@pytest.mark.parametrize("case", HUGE["cases"], ids=[c["name"] for c in HUGE["cases"]])
@pytest.mark.parametrize("path", ["/embed", "/v1/embeddings"])
def test_huge_texts_match_sentence_transformers(roomy, case, path):
    text = build(case)
    assert len(text) == case["chars"]
    status, body = roomy.post(path, {"input": [text]})
    assert status == 200, body
    vector = body["embeddings"][0] if path == "/embed" else body["data"][0]["embedding"]
    assert cosine(vector, case["embedding"]) >= 0.9999


# Runs in the service's venv, where the tokenizer lives: the bounded tokenizer against full
# truncation (the library's own), on the fixture and on random texts built to hit the
# reductions' edges (runs of every kind of space, words past WordPiece's limit, accents,
# CJK, emoji, combining marks, control characters), long enough to need windows.
EXACTNESS = r"""
import json, random, sys
from tokenizers import Tokenizer
from transformers import AutoTokenizer
from mlx_service.models.folder import bundled_model_path
from mlx_service.models.truncation import BoundedTokenizer
hf = AutoTokenizer.from_pretrained(str(bundled_model_path()))
full = Tokenizer.from_str(hf.backend_tokenizer.to_str())
full.enable_truncation(256)
full.no_padding()
bounded = BoundedTokenizer(hf.backend_tokenizer, 256)
texts = ["".join(p * n for p, n in c["parts"]) for c in json.load(open(sys.argv[1]))["cases"]]
rng = random.Random(20261128)
pieces = ["a", "Hello", "x" * 99, "x" * 100, "x" * 101, "é", "naïve", "東京", " ",
          "   ", "\n", "\t", "\r\n", "\u00a0", "\u2028", "\u3000", "\x0b", "\x00", ",", ".", "'",
          "😀", "\u0301", "İ", "ß", "-", "9" * 150, "Ab9" * 60, "_" * 200]
rare = [" " * 5000, "y" * 3000, "\n\t" * 2000]
for _ in range(1500):
    parts = [rng.choice(pieces) for _ in range(rng.randint(1, 600))]
    if rng.random() < 0.3:
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(rare))
    texts.append("".join(parts))
batched = bounded.encode_batch(texts)  # the service's path: short texts in one batch call
expected = [full.encode(t).ids for t in texts]
wrong = [i for i, t in enumerate(texts) if bounded.encode_batch([t])[0] != expected[i] or batched[i] != expected[i]]
print(json.dumps({"texts": len(texts), "wrong": wrong[:10]}))
"""


def test_bounded_tokenizing_equals_full_truncation(service_py):
    done = subprocess.run([str(service_py), "-c", EXACTNESS, str(FIXTURES / "minilm-huge-texts.json")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1",
                               "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["texts"] > 1500 and result["wrong"] == [], result
