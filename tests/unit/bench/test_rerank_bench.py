"""`inv bench --rerank`: the random rerankers' names and widths, the workload, the ratios and
their verdicts, the report, the flags, the 429 retries and the model cache (no model)."""
from __future__ import annotations

import importlib.util
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tasks.bench import corpus as corpus_files
from tasks.bench import rerank_models
from tasks.bench.document import missed_targets
from tasks.bench.errors import BenchError
from tasks.bench.rerank_client import RerankClient, concurrent_requests, timed_request
from tasks.bench.rerank_document import PEER, SERVICE, SERVICE_CONCURRENT, \
    build_rerank_document, per_layer_ms, save_rerank_result, summarize_shape
from tasks.bench.rerank_models import PUBLISHED_LAYERS, RANDOM_RERANKERS
from tasks.bench.rerank_report import format_rerank_report
from tasks.bench.rerank_rounds import due_rounds, interleaved_rounds
from tasks.bench.rerank_run import RerankOptions, rerank_flag_problem
from tasks.bench.rerank_workload import DOCUMENTS, QUERY, RerankWorkload, \
    build_rerank_workload
from tests.support import FIXTURES, REPO_ROOT
from tests.unit.bench.test_bench_models import safetensors_header

SCRIPT = REPO_ROOT / "tasks" / "bench" / "scripts" / "random_reranker.py"
spec = importlib.util.spec_from_file_location("random_reranker", SCRIPT)
random_reranker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(random_reranker)


# --- the random rerankers ------------------------------------------------------------------------
@pytest.mark.parametrize("fixture", ["bert-rerank", "xlmr-rerank"])
def test_random_reranker_names_and_shapes_are_the_checkpoints(fixture):
    folder = FIXTURES / "tiny-rerankers" / fixture
    config = json.loads((folder / "config.json").read_text())
    want = safetensors_header(folder / "model.safetensors")
    assert random_reranker.shapes_of(config["model_type"], config) == want


def test_random_rerankers_are_the_published_widths():
    assert {name: fixture for name, (fixture, _) in random_reranker.SHAPES.items()} \
        == RANDOM_RERANKERS
    minilm = random_reranker.SHAPES["ms-marco-minilm-l6"][1]
    assert (minilm["hidden_size"], minilm["intermediate_size"], minilm["num_attention_heads"],
            minilm["max_position_embeddings"]) == (384, 1536, 12, 512)
    assert minilm["num_hidden_layers"] == PUBLISHED_LAYERS["ms-marco-minilm-l6"]
    bge = random_reranker.SHAPES["bge-reranker-base"][1]
    assert (bge["hidden_size"], bge["intermediate_size"], bge["num_attention_heads"],
            bge["max_position_embeddings"]) == (768, 3072, 12, 514)
    assert bge["num_hidden_layers"] < PUBLISHED_LAYERS["bge-reranker-base"]  # per layer


def test_a_built_reranker_is_reused_until_what_built_it_changes(tmp_path, monkeypatch):
    for part in (rerank_models.RANDOM_RERANKER_SCRIPT, rerank_models.RANDOM_MODEL_SCRIPT):
        (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / part, tmp_path / part)
    fixture = rerank_models.FIXTURES / "bert-rerank"
    (tmp_path / fixture).mkdir(parents=True)
    (tmp_path / fixture / "config.json").write_text("{}")
    builds = []

    def fake_build(argv, **_):
        out = Path(argv[-1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}")
        builds.append(argv[-2])
        return type("Done", (), {"exit_code": 0, "stderr": ""})()

    monkeypatch.setattr(rerank_models, "run", fake_build)
    folder, built = rerank_models.random_reranker(Path("python"), tmp_path, "ms-marco-minilm-l6")
    assert built and folder == tmp_path / "bench-results" / "models" / "ms-marco-minilm-l6"
    assert rerank_models.random_reranker(Path("python"), tmp_path,
                                         "ms-marco-minilm-l6") == (folder, False)
    (tmp_path / fixture / "config.json").write_text('{"changed": true}')
    assert rerank_models.random_reranker(Path("python"), tmp_path,
                                         "ms-marco-minilm-l6")[1] is True
    assert builds == ["ms-marco-minilm-l6"] * 2
    with pytest.raises(BenchError, match="no random reranker"):
        rerank_models.random_reranker(Path("python"), tmp_path, "nope")


# --- the workload --------------------------------------------------------------------------------
def test_the_workload_is_one_corpus_query_and_the_first_prose_paragraphs():
    corpus = corpus_files.load_corpus(REPO_ROOT / corpus_files.CORPUS)
    prose = corpus_files.load_prose(REPO_ROOT / corpus_files.PROSE,
                                    REPO_ROOT / corpus_files.PROSE_DIGEST)
    workload = build_rerank_workload(corpus, prose)
    assert workload.query == QUERY and workload.pairs == DOCUMENTS == 100
    assert workload.documents == tuple(prose[:100])
    assert workload.as_texts() == [QUERY, *prose[:100]]  # how the peer worker gets it
    assert workload.body() == {"query": QUERY, "texts": prose[:100], "truncate": True}
    with pytest.raises(BenchError, match="fewer than 100"):
        build_rerank_workload(corpus, prose[:99])
    with pytest.raises(BenchError, match="not among"):
        build_rerank_workload({"short": ["other"]}, prose)


# --- ratios, targets, document -------------------------------------------------------------------
SECONDS = {SERVICE: [2.0, 1.0, 3.0], SERVICE_CONCURRENT: [10.0, 20.0, 16.0], PEER: [4.0, 4.0]}


def test_pairs_per_second_are_medians_and_the_peer_serves_clients_one_by_one():
    got = summarize_shape(SECONDS, pairs=100, clients=16)
    assert got["service_pps"] == 50.0                    # 100 / median 2 s
    assert got["service_concurrent_pps"] == 100.0        # 1600 / median 16 s
    assert got["peer_pps"] == got["peer_concurrent_pps"] == 25.0
    assert got["vs_peer"] == 2.0 and got["vs_peer_concurrent"] == 4.0
    no_peer = summarize_shape({k: v for k, v in SECONDS.items() if k != PEER}, 100, 16)
    assert no_peer["vs_peer"] is None and no_peer["vs_peer_concurrent"] is None
    assert per_layer_ms(50.0, 4) == 5.0 and per_layer_ms(None, 4) is None


def shape(name="ms-marco-minilm-l6", vs_peer=1.6, vs_peer_concurrent=1.4, layers=6,
          published=6, refusals=(0, 3)):
    return {"name": name, "architecture": "BertForSequenceClassification", "hidden": 384,
            "layers": layers, "published_layers": published, "max_length": 512,
            "precision": "fp32", "forward": "cpu-fast", "tokens_per_pair": 119.5,
            "service_pps": 32.0, "service_concurrent_pps": 28.0, "peer_pps": 20.0,
            "peer_concurrent_pps": 20.0, "vs_peer": vs_peer,
            "vs_peer_concurrent": vs_peer_concurrent, "refusals": list(refusals),
            "retry_after_s": [2.0, 9.0, 4.0] if any(refusals) else []}


def document(shapes, peer=None):
    machine = {"cpu": "Test CPU 9000", "cores": 2, "platform": "linux-x86_64",
               "loadavg_start": 1.5, "loadavg_end": 2.0}
    workload = {"query": QUERY, "documents": 100, "clients": 16,
                "source": "tasks/bench/data/prose.json", "sha256": "ab" * 32}
    return build_rerank_document(
        started="2026-12-07T12:00:00Z", quick=True, repeats=3, concurrent_repeats=1,
        machine=machine,
        workload=workload, elapsed_s=12.3, shapes=shapes,
        peer=peer or {"measured": True, "sentence_transformers": "6.2.0", "torch": "2.13.0",
                      "torch_threads": 2, "batch_size": 32})


def test_each_ratio_is_held_to_one_and_a_half_and_a_miss_is_a_missed_target():
    doc = document([shape(), shape("bge-reranker-base", None, None, 3, 12)])
    verdicts = {t["key"]: t["met"] for t in doc["targets"]}
    assert verdicts == {"ms-marco-minilm-l6.vs_peer": True,
                        "ms-marco-minilm-l6.vs_peer_concurrent": False,
                        "bge-reranker-base.vs_peer": None,
                        "bge-reranker-base.vs_peer_concurrent": None}
    assert all(t["target"] == ">= 1.5" for t in doc["targets"])
    assert [t["key"] for t in missed_targets(doc)] == ["ms-marco-minilm-l6.vs_peer_concurrent"]
    assert not missed_targets(document([shape(vs_peer_concurrent=1.5)]))


def test_the_report_names_the_cpu_the_figures_and_the_verdicts():
    shapes = [shape(), shape("bge-reranker-base", layers=3, published=12, refusals=())]
    text = format_rerank_report(document(shapes))
    assert "CPU Test CPU 9000 (2 cores)" in text and "load avg 1.5 -> 2.0" in text
    assert "1 query x 100 documents, sent by 1 client, and by 16 clients at once" in text
    assert "medians of 3 interleaved runs (16 clients at once: 1) (--quick)" in text
    assert "CrossEncoder.predict(batch_size=32) on torch 2.13.0 (2 threads)" in text
    rows = [line.split() for line in text.splitlines()
            if line.startswith("  1") and "x  >=" in line]
    assert rows[:2] == [["1", "client", "32.0", "20.0", "1.60x", ">=", "1.5:", "met"],
                        ["16", "clients", "28.0", "20.0", "1.40x", ">=", "1.5:", "NOT", "MET"]]
    assert "3 of its 12 layers (compare per layer)" in text
    assert "ms a pair per layer: service 1 client 5.21" in text  # 1000 / 32 / 6
    assert text.count("answers 429") == 1  # only the shape that had some
    assert "3 answers 429 (admission) over 2 runs, Retry-After 2-9 s" in text
    assert "elapsed 12 s" in text
    assert all(len(line) < 110 for line in text.splitlines())


def test_the_report_says_why_the_peer_was_not_measured():
    doc = document([shape(vs_peer=None, vs_peer_concurrent=None)],
                   peer={"measured": False, "reason": "--no-peer"})
    text = format_rerank_report(doc)
    assert "peer: not measured (--no-peer)" in text
    assert "(target >= 1.5): not measured" in text
    assert not missed_targets(doc)


def test_the_document_is_saved_beside_the_embedding_bench_not_over_it(tmp_path):
    doc = document([shape()])
    path = save_rerank_result(tmp_path, doc)
    assert path.name == "rerank-20261207T120000Z.json"
    assert json.loads(path.read_text()) == doc
    assert json.loads((path.parent / "rerank-latest.json").read_text()) == doc
    assert not (path.parent / "latest.json").exists()


# --- flags ---------------------------------------------------------------------------------------
def test_rerank_refuses_an_embedding_model_flag():
    assert rerank_flag_problem(None, None) is None
    assert "--model names an embedding model" in rerank_flag_problem("x", None)
    assert "--model and --random-model name an" in rerank_flag_problem("x", "modernbert-base")


def test_quick_runs_fewer_repeats_and_repeats_wins():
    assert RerankOptions().n_repeats > RerankOptions(quick=True).n_repeats >= 2
    assert RerankOptions(quick=True, repeats=4).n_repeats == 4
    # 16 clients at once cost 16 requests a run: fewer runs, at least one
    assert RerankOptions(quick=True).concurrent_repeats == 1
    assert 1 < RerankOptions().concurrent_repeats < RerankOptions().n_repeats
    assert RerankOptions(repeats=1).concurrent_repeats == 1


# --- rounds --------------------------------------------------------------------------------------
def test_a_side_with_fewer_runs_is_spread_over_the_rounds():
    assert due_rounds(3, 3) == {0, 1, 2} and due_rounds(5, 3) == {0, 1, 2}
    assert due_rounds(1, 3) == {1} and due_rounds(3, 7) == {1, 3, 5} and due_rounds(2, 4) == {1, 3}
    with pytest.raises(ValueError):
        due_rounds(0, 3)


def test_rounds_rotate_the_order_and_run_each_side_its_number_of_times():
    calls = []

    def side(name):
        return lambda: calls.append(name) or float(len(calls))

    said = []
    seconds = interleaved_rounds({"a": side("a"), "b": side("b"), "c": side("c")},
                                 {"a": 3, "b": 1, "c": 3}, said.append, "x: ")
    assert calls == ["a", "c", "b", "c", "a", "c", "a"]  # b only in the middle round
    assert seconds == {"a": [1.0, 5.0, 7.0], "b": [3.0], "c": [2.0, 4.0, 6.0]}
    assert said == ["x: round 1/3 done", "x: round 2/3 done", "x: round 3/3 done"]


# --- HTTP: one client, concurrent clients and their 429s -----------------------------------------
class FakeReranker(BaseHTTPRequestHandler):
    refuse_first = 0       # answer this many POSTs 429 before scoring
    ranked_by = "reranker"
    posts: list = []
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def _send(self, code, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(code)
        for name, value in {"Content-Type": "application/json",
                            "Content-Length": str(len(data)), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send(200, {"message": "pong"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = FakeReranker
        with cls.lock:
            cls.posts.append(body)
            refuse = cls.refuse_first > 0
            cls.refuse_first -= 1
        if refuse:
            self._send(429, {"error": "busy"}, {"Retry-After": "0"})
        else:
            scores = [{"index": i, "score": 0.5} for i in range(len(body["texts"]))]
            self._send(200, scores, {"X-Ranked-By": cls.ranked_by})


@pytest.fixture
def fake_reranker():
    FakeReranker.refuse_first, FakeReranker.ranked_by, FakeReranker.posts = 0, "reranker", []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeReranker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


WORKLOAD = RerankWorkload("q", ("a", "b", "c"))


def test_concurrent_clients_retry_a_429_and_count_it(fake_reranker):
    FakeReranker.refuse_first = 5
    run = concurrent_requests(fake_reranker, None, WORKLOAD, clients=4)
    assert run["refusals"] == 5 and run["seconds"] > 0 and run["retry_after_s"] == [0.0] * 5
    assert len(FakeReranker.posts) == 4 + 5
    assert all(p == WORKLOAD.body() for p in FakeReranker.posts)


def test_one_client_treats_a_429_or_the_embedding_fallback_as_errors(fake_reranker):
    client = RerankClient(fake_reranker, None)
    assert timed_request(client, WORKLOAD) > 0
    FakeReranker.refuse_first = 1
    with pytest.raises(BenchError, match="answered 429"):
        timed_request(client, WORKLOAD)
    FakeReranker.ranked_by = "embedding-cosine"  # RERANK_MODEL was not loaded
    with pytest.raises(BenchError, match="ranked by embedding-cosine"):
        timed_request(client, WORKLOAD)
    with pytest.raises(BenchError, match="clients failed"):
        concurrent_requests(fake_reranker, None, WORKLOAD, clients=2)
