"""Pairs tokenized as sentence-transformers' CrossEncoder tokenizes them (transformers'
`tokenizer([query], [document], truncation=True, max_length=L)`, the chat template rendered,
cut and its suffix put back), at a cost bounded by the window (mlx_service/models/
pair_tokens.py): random pairs of every length around the window, texts longer than the
windowed path's first window, and 4 MB documents (with spaces, and CJK without any).

Measured (2 shared cores, load 10-25 from other sessions): a 4 MB document 1-14 ms per pair,
4 M characters of CJK 16-200 ms (the window stops at 64 characters per token of max_length).
"""
from __future__ import annotations

import pytest

from tests.service.mlx_service.test_service_cpu_fast import run_in_service_venv

SCRIPT = r"""
import json, random, time
from transformers import AutoTokenizer
from mlx_service.models.scorer import Scorer
from mlx_service.models.scorer_folder import read_scorer_spec

ref = json.load(open("tests/fixtures/tiny-rerankers/reference.json"))
words = " ".join(ref["documents"] + ref["queries"]).split()
long_doc = ref["documents"][6] * 8               # 14 K characters: the windowed path
huge = (ref["documents"][6] * 3000)[:4_000_000]  # 4 MB
cjk = "東京" * 2_000_000                         # 4 M characters, no whitespace
random.seed(7)
out = {}
for name in ("bert-rerank", "xlmr-rerank", "modernbert-rerank", "qwen3-rerank"):
    folder = "tests/fixtures/tiny-rerankers/" + name
    sc = Scorer(read_scorer_spec(folder), cpu_fast=False)
    tok = AutoTokenizer.from_pretrained(folder)
    L = sc.max_length
    pairs = [(" ".join(random.choices(words, k=random.choice([0, 1, 5, 40, 120, 300, 700]))),
              " ".join(random.choices(words, k=random.choice([0, 1, 5, 40, 120, 300, 700]))))
             for _ in range(150)]
    pairs += [(ref["queries"][1], long_doc), (long_doc, "short"), (long_doc, long_doc[3:]),
              ("", "")]
    if sc.kind == "causal-lm-logit-score":
        suffix = sc._chat.suffix_ids(False)
        def want(a, b):
            ids = tok(sc._chat.template.render(a, b))["input_ids"]
            return ids if len(ids) <= L else ids[:L - len(suffix)] + suffix
        got = [sc.tokenize_pairs(a, [b])[0] for a, b in pairs]
    else:
        def want(a, b):
            return tok([a], [b], truncation=True, max_length=L)["input_ids"][0]
        got = sc.tokenize_inputs(pairs)
    wrong = [i for i, (a, b) in enumerate(pairs) if got[i] != want(a, b)]
    times, same = {}, {}
    for label, text in (("huge", huge), ("cjk", cjk)):
        started = time.perf_counter()
        for _ in range(3):
            ids = sc.tokenize_pairs(ref["queries"][0], [text])[0]
        times[label] = (time.perf_counter() - started) / 3
        same[label] = len(ids) == L
    # the 4 MB document starts as the 14 K one: its tokens are the same
    same["huge_as_long"] = (sc.tokenize_pairs(ref["queries"][0], [huge])
                            == sc.tokenize_pairs(ref["queries"][0], [long_doc]))
    bound = sc.most_tokens(ref["queries"][0], ref["documents"])
    real = sum(map(len, sc.tokenize_pairs(ref["queries"][0], ref["documents"])))
    out[name] = {"wrong": wrong, "pairs": len(pairs), "cut": sum(len(g) == L for g in got),
                 "times": times, "same": same, "bound": bound, "real": real}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def tokens(service_py):
    return run_in_service_venv(service_py, SCRIPT, timeout=900)


@pytest.mark.parametrize("name", ["bert-rerank", "xlmr-rerank", "modernbert-rerank",
                                  "qwen3-rerank"])
def test_pairs_tokenized_as_transformers_does(tokens, name):
    got = tokens[name]
    assert got["wrong"] == [], f"{name}: {len(got['wrong'])} of {got['pairs']} pairs differ"
    assert got["cut"] >= 40  # many pairs really were truncated (both sides, one side)


@pytest.mark.parametrize("name", ["bert-rerank", "xlmr-rerank", "modernbert-rerank",
                                  "qwen3-rerank"])
def test_four_megabyte_documents_cost_bounded_time(tokens, name):
    got = tokens[name]
    assert all(got["same"].values()), got["same"]
    assert got["times"]["huge"] < 0.5 and got["times"]["cjk"] < 3.0, got["times"]
    assert got["real"] <= got["bound"]  # most_tokens is an upper bound
