"""The status document: its schema, validation before printing, per-service facts."""
import copy
import json

import jsonschema
import pytest

from tasks.stack.container import Container
from tasks.stack.status_doc import (SCHEMA_PATH, StatusDocError, load_schema, service_facts,
                              validate)

SEED_SHAPE = {  # DESIGN.md's example: the seed's keys
    "ports": {"api": 8080, "mlx": 8081, "webui": 3000, "modelGateway": 8083, "nats": 4222},
    "mlx": {"running": True, "pid": 12345, "url": "http://127.0.0.1:8081", "responding": True,
            "log": "logs/mlx-server.log"},
    "containers": [{"Name": "cortex-nats-1", "State": "running", "Service": "nats"}],
    "connectivity": {"mlx": True, "api": False, "modelGateway": True, "webui": False},
}


def test_schema_is_a_valid_schema():
    jsonschema.Draft202012Validator.check_schema(load_schema())
    assert SCHEMA_PATH.name == "status.schema.json"


def test_seed_shape_is_valid():
    validate(copy.deepcopy(SEED_SHAPE))


def full_doc():
    doc = copy.deepcopy(SEED_SHAPE)
    doc.update(schemaVersion=1, generatedAt="2026-11-27T04:01:01+00:00", project="cortex",
               engine={"available": True, "kind": "docker", "version": "2.26.1", "error": None})
    doc["services"] = {
        "nats": {"running": True, "healthy": True, "ready": True, "state": "running",
                 "health": "healthy", "container": "cortex-nats-1", "port": 8222,
                 "probe": "http://127.0.0.1:8222/healthz", "detail": "HTTP 200"},
        "grafana": {"running": False, "healthy": None, "ready": False, "state": "absent",
                    "health": None, "container": None, "port": 3001, "probe": None,
                    "detail": "no container"},
    }
    return doc


def test_full_document_is_valid():
    validate(full_doc())


@pytest.mark.parametrize("path, value, where", [
    (("connectivity",), None, "(root)"),  # removed
    (("ports", "nats"), "4222", "ports/nats"),
    (("ports", "grafana"), 70000, "ports/grafana"),
    (("mlx", "responding"), "yes", "mlx/responding"),
    (("containers", 0, "Name"), "", "containers/0/Name"),
    (("services", "nats", "ready"), None, "services/nats/ready"),
    (("connectivity", "webui"), 1, "connectivity/webui"),
])
def test_invalid_documents_are_refused(path, value, where):
    doc = full_doc()
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is None and path == ("connectivity",):
        del doc["connectivity"]
    else:
        target[path[-1]] = value
    with pytest.raises(StatusDocError) as info:
        validate(doc)
    assert where in str(info.value)


def test_colour_codes_cannot_sneak_into_json():
    # the seed printed ANSI colours into its JSON; ours is the json module's output
    doc = full_doc()
    text = json.dumps(doc)
    assert "\x1b" not in text and json.loads(text) == doc


def test_service_without_container_is_absent_not_running():
    facts = service_facts("grafana", None, {"grafana": 3001})
    assert facts["state"] == "absent" and facts["running"] is False
    assert facts["ready"] is False and facts["healthy"] is None
    assert facts["probe"] == "http://127.0.0.1:3001/api/health"


def test_exited_container_is_neither_running_nor_ready_and_health_is_separate():
    facts = service_facts("nats", Container.from_ps({"Name": "p-nats-1", "State": "exited",
                                                     "Health": "", "Status": "Exited (1)"}),
                          {"natsMonitor": 1})
    assert (facts["running"], facts["healthy"], facts["ready"]) == (False, None, False)
    starting = service_facts("nats", Container.from_ps({"Name": "p-nats-1", "State": "running",
                                                        "Health": "starting"}),
                             {"natsMonitor": 1})
    # running, health check not decided yet, and port 1 answers nothing: three separate facts
    assert (starting["running"], starting["healthy"], starting["ready"]) == (True, None, False)


def test_a_started_service_without_container_is_gone_and_one_never_started_is_not(tmp_path):
    from tasks.core.settings import load_settings
    from tasks.stack.started_record import forget_started, remember_started, started_services

    settings = load_settings(environ={"CORTEX_RUN_DIR": str(tmp_path),
                                      "CORTEX_COMPOSE_PROJECT": "p"})
    remember_started(settings, ["nats", "model-gateway"])
    remember_started(settings, ["prometheus"])  # a later start adds to the record
    assert started_services(settings) == {"nats", "model-gateway", "prometheus"}
    # another project name has its own record
    assert started_services(settings.with_env(CORTEX_COMPOSE_PROJECT="q")) == set()
    gone = service_facts("nats", None, {"natsMonitor": 1}, started=True)
    assert gone["gone"] is True and gone["detail"].startswith("gone: inv start started it")
    skipped = service_facts("grafana", None, {"grafana": 1})
    assert skipped["gone"] is False and skipped["detail"] == "no container"
    forget_started(settings, ["nats"])
    assert started_services(settings) == {"model-gateway", "prometheus"}
    forget_started(settings)  # inv stop / clean
    assert started_services(settings) == set() and not list(tmp_path.iterdir())
