"""Every tiny reranker fixture through every route it serves, over real HTTP (issue 24, tests):
scores equal to sentence-transformers' (reference.json: raw within 2e-3, scores within
1e-3) and CrossEncoder.rank's order, with all documents in one request (one batched job) and
one pair at a time; the classifier's labels and softmax through /predict."""
from __future__ import annotations

import json

import pytest

from tests.service_support import http, spawn_service
from tests.support import FIXTURES

JSON = {"Content-Type": "application/json"}
RERANKERS = FIXTURES / "tiny-rerankers"
REFERENCE = json.loads((RERANKERS / "reference.json").read_text())
QUERIES, DOCUMENTS = REFERENCE["queries"], REFERENCE["documents"]
RAW_TOL, SCORE_TOL = 2e-3, 1e-3
ONE_LABEL = ("bert-rerank", "xlmr-rerank", "modernbert-rerank", "qwen3-rerank")


@pytest.fixture(scope="module")
def services(tmp_path_factory, service_py):
    """One service per fixture folder, started when a test first needs it."""
    started: dict = {}

    def get(name: str):
        if name not in started:
            started[name] = spawn_service(tmp_path_factory.mktemp(name), python=service_py,
                                          env={"RERANK_MODEL": str(RERANKERS / name)},
                                          timeout=240)
        return started[name]

    yield get
    for svc in started.values():
        svc.stop()


@pytest.fixture
def served(request, services):
    name = request.param
    return name, services(name), REFERENCE["models"][name]


def post(svc, path: str, payload):
    status, headers, raw = http("POST", svc.url + path, json.dumps(payload).encode(), JSON,
                                timeout=300)
    body = json.loads(raw)
    assert status == 200, body
    return headers, body


def close(got: float, want: float, tol: float, what: str) -> None:
    assert abs(got - want) <= tol, f"{what}: {got} vs {want} (tolerance {tol})"


def each(*names: str):
    return pytest.mark.parametrize("served", names, indirect=True)


@each(*ONE_LABEL, "bert-nli")
def test_info_and_models_name_the_reranker(served):
    name, svc, ref = served
    info = svc.get("/info")[1]["reranker"]
    assert info["model"] == name and info["max_length"] == int(ref["max_length"])
    assert info["activation"] == ref["activation"].lower()
    assert info["num_labels"] == int(ref["num_labels"])
    ids = [m["id"] for m in svc.get("/v1/models")[1]["data"]]
    assert len(ids) == 2 and ids[1] == name
    assert svc.get("/health")[1]["rerank_model"] == name


@each(*ONE_LABEL)
def test_every_rerank_route_gives_the_reference_scores_and_order(served):
    name, svc, ref = served
    for q, query in enumerate(QUERIES):
        headers, raw = post(svc, "/rerank", {"query": query, "texts": DOCUMENTS,
                                             "raw_scores": True})
        assert headers["X-Ranked-By"] == "reranker"
        assert [r["index"] for r in raw] == ref["rank"][q], (name, q)
        for r in raw:
            close(r["score"], ref["raw"][q][r["index"]], RAW_TOL, f"{name} raw q{q}")
        _, scored = post(svc, "/rerank", {"query": query, "texts": DOCUMENTS})
        for r in scored:
            close(r["score"], ref["scores"][q][r["index"]], SCORE_TOL, f"{name} score q{q}")
        for path in ("/v1/rerank", "/v2/rerank"):
            _, body = post(svc, path, {"model": name, "query": query, "documents": DOCUMENTS})
            assert [r["index"] for r in body["results"]] == ref["rank"][q], (name, path, q)
            for r in body["results"]:
                close(r["relevance_score"], ref["scores"][q][r["index"]], SCORE_TOL,
                      f"{name} {path} q{q}")
            assert body["model"] == name and body["ranked_by"] == "reranker"


@each(*ONE_LABEL)
def test_one_pair_at_a_time_gives_the_same_scores(served):
    name, svc, ref = served
    q = 1
    for d, document in enumerate(DOCUMENTS):
        _, body = post(svc, "/rerank", {"query": QUERIES[q], "texts": [document],
                                        "raw_scores": True})
        assert [r["index"] for r in body] == [0]
        close(body[0]["score"], ref["raw"][q][d], RAW_TOL, f"{name} alone d{d}")


@each("bert-rerank", "xlmr-rerank")
def test_an_instruction_for_an_encoder_is_refused(served):
    name, svc, ref = served
    status, _, raw = http("POST", svc.url + "/rerank", json.dumps(
        {"query": "q", "texts": ["d"], "instruction": "judge"}).encode(), JSON)
    assert status == 400 and json.loads(raw)["error"]["param"] == "instruction"


@each("qwen3-rerank")
def test_instruction_for_a_chat_template_reranker(served):
    name, svc, ref = served
    for q, query in enumerate(QUERIES):
        _, body = post(svc, "/v1/rerank", {"query": query, "documents": DOCUMENTS,
                                           "instruction": ref["instruction"]})
        for r in body["results"]:
            close(r["relevance_score"], ref["instruction_scores"][q][r["index"]], SCORE_TOL,
                  f"{name} instruction q{q}")


@each("bert-nli")
def test_a_classifier_predicts_labels_and_reranks_by_cosine(served):
    name, svc, ref = served
    labels = ref["labels"]
    for q, query in enumerate(QUERIES):
        pairs = [[query, d] for d in DOCUMENTS]
        _, soft = post(svc, "/predict", {"inputs": pairs})
        _, raw = post(svc, "/predict", {"inputs": pairs, "raw_scores": True})
        for d in range(len(DOCUMENTS)):
            assert [p["score"] for p in soft[d]] == sorted((p["score"] for p in soft[d]),
                                                          reverse=True)
            assert {p["label"] for p in soft[d]} == set(labels)
            for p in soft[d]:
                k = labels.index(p["label"])
                close(p["score"], ref["softmax"][q][d][k], SCORE_TOL, f"softmax q{q} d{d}")
            for p in raw[d]:
                k = labels.index(p["label"])
                close(p["score"], ref["raw"][q][d][k], RAW_TOL, f"raw q{q} d{d}")
    _, one = post(svc, "/predict", {"inputs": [QUERIES[0], DOCUMENTS[0]]})  # one pair
    assert [p["label"] for p in one] and abs(sum(p["score"] for p in one) - 1) < 1e-5
    headers, body = post(svc, "/rerank", {"query": QUERIES[0], "texts": DOCUMENTS[:3]})
    assert headers["X-Ranked-By"] == "embedding-cosine" and len(body) == 3


def metric(svc, name: str) -> float:
    text = http("GET", svc.url + "/metrics")[2].decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


@each("bert-rerank")
def test_the_pairs_of_one_request_are_one_pass_and_counted(served):
    name, svc, ref = served
    passes, pairs = metric(svc, "mlx_embed_batch_size_rows_count"), metric(
        svc, "mlx_embed_scored_pairs_total")
    post(svc, "/rerank", {"query": QUERIES[0], "texts": DOCUMENTS})
    assert metric(svc, "mlx_embed_scored_pairs_total") - pairs == len(DOCUMENTS)
    # One job: the six short pairs share a pass; the long one (128 tokens) goes alone, as the
    # batch plan keeps short rows from being padded to it. Not one pass per pair (TEI #713).
    assert metric(svc, "mlx_embed_batch_size_rows_count") - passes == 2


@each("bert-rerank")
def test_truncate_false_refuses_a_pair_longer_than_the_window(served):
    name, svc, ref = served
    long_doc = DOCUMENTS[-1]  # longer than every fixture's window
    status, _, raw = http("POST", svc.url + "/rerank", json.dumps(
        {"query": "q", "texts": ["short", long_doc], "truncate": False}).encode(), JSON)
    error = json.loads(raw)["error"]
    assert status == 413 and error["param"] == "texts" and "texts[1]" in error["message"]
    _, body = post(svc, "/rerank", {"query": "q", "texts": ["short", long_doc]})
    assert len(body) == 2  # truncated as sentence-transformers does, by default
