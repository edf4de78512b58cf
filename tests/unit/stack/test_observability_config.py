"""Grafana's provisioning and dashboards as files (the e2e test runs their queries against
the real Prometheus), and where `inv start` points OTLP."""
from __future__ import annotations

import json

import yaml

from tasks.core.settings import load_settings
from tasks.stack.otlp_endpoints import grafana_url, otlp_environment
from tests.support import REPO_ROOT, QuietHandler

GRAFANA = REPO_ROOT / "compose" / "grafana"


def datasources() -> dict[str, dict]:
    doc = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "datasources.yml").read_text())
    return {d["uid"]: d for d in doc["datasources"]}


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in (GRAFANA / "dashboards").glob("*.json")}


def test_datasources_have_fixed_uids_and_link_traces_and_logs():
    sources = datasources()
    assert {"prometheus", "loki", "tempo"} <= set(sources)
    assert sources["prometheus"]["url"] == "http://prometheus:9090"
    derived = sources["loki"]["jsonData"]["derivedFields"]
    assert any(f["matcherType"] == "label" and f["matcherRegex"] == "trace_id"
               and f["datasourceUid"] == "tempo" for f in derived)
    to_logs = sources["tempo"]["jsonData"]["tracesToLogsV2"]
    assert to_logs["datasourceUid"] == "loki" and to_logs["filterByTraceID"]
    assert {"key": "service.name", "value": "service_name"} in to_logs["tags"]


def test_dashboards_are_provisioned_from_the_mounted_folder():
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "dashboards.yml")
                              .read_text())["providers"][0]
    compose = yaml.safe_load((REPO_ROOT / "compose" / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts
    boards = dashboards()
    assert {"embedding-service.json", "stack.json"} <= set(boards)
    uids = [b["uid"] for b in boards.values()]
    assert len(uids) == len(set(uids))


def test_every_panel_queries_a_provisioned_datasource():
    sources = datasources()
    for name, board in dashboards().items():
        assert board["panels"], name
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in board["panels"]:
            assert panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] in sources
                assert target["expr"].strip(), (name, panel["title"])


def test_start_points_otlp_at_tempo_and_loki_only_when_they_run(tmp_path):
    settings = load_settings(environ={"CORTEX_ENV_FILE": str(tmp_path / "none"),
                                      "CORTEX_LOKI_PORT": "3999",
                                      "CORTEX_TEMPO_OTLP_HTTP_PORT": "4999"})
    assert otlp_environment(settings, {"nats", "prometheus", "grafana"}) == {}
    both = otlp_environment(settings, {"tempo", "loki"})
    assert both == {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4999/v1/traces",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://127.0.0.1:3999/otlp/v1/logs",
        "CORTEX_CONTAINERS_OTLP_TRACES_ENDPOINT": "http://tempo:4318/v1/traces",
        "CORTEX_CONTAINERS_OTLP_LOGS_ENDPOINT": "http://loki:3100/otlp/v1/logs"}
    assert set(otlp_environment(settings, {"tempo"})) == {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "CORTEX_CONTAINERS_OTLP_TRACES_ENDPOINT"}
    # What the user set is theirs: kept, not overridden.
    mine = settings.with_env(OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4318")
    assert set(otlp_environment(mine, {"tempo", "loki"})) == {
        "CORTEX_CONTAINERS_OTLP_TRACES_ENDPOINT", "CORTEX_CONTAINERS_OTLP_LOGS_ENDPOINT"}
    assert grafana_url(settings).endswith("/d/cortex-embeddings")


def test_scrape_targets_reads_each_jobs_health_and_a_down_target_wins():
    import threading
    from http.server import ThreadingHTTPServer

    from tasks.stack.prometheus_targets import scrape_targets

    targets = [{"labels": {"job": "mlx"}, "health": "down"},
               {"labels": {"job": "model-gateway"}, "health": "up"},
               {"labels": {"job": "pair"}, "health": "up"},
               {"labels": {"job": "pair"}, "health": "down"},
               {"labels": {"job": "pair"}, "health": "up"},
               {"labels": {"job": "new"}, "health": "unknown"},
               {"labels": {"job": "fresh"}, "health": "unknown",
                "lastScrape": "0001-01-01T00:00:00Z"}]

    class Answer(QuietHandler):
        def do_GET(self):
            body = json.dumps({"status": "success",
                               "data": {"activeTargets": targets}}).encode()
            self.reply(200 if self.path.startswith("/api/v1/targets") else 404, body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert scrape_targets(server.server_address[1]) == {
            "mlx": "down", "model-gateway": "up", "new": "unknown", "pair": "down",
            "fresh": "not scraped yet"}  # its lastScrape is the zero time: never scraped
    finally:
        server.shutdown()
        server.server_close()
    assert scrape_targets(server.server_address[1], timeout=0.5) == {}  # nothing answers
