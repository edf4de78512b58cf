"""inv health counts the host service ready only when /health says ok, not when it merely answers."""
from tasks.core.settings import load_settings
from tasks.stack import health as stack
from tasks.stack import status_doc


def _doc(health_status, responding=True):
    return {
        "mlx": {"running": True, "url": "http://127.0.0.1:1", "responding": responding,
                "healthy": health_status == "ok",
                "health": {"status": health_status} if responding else None},
        "services": {"nats": {"running": True, "healthy": True, "ready": True, "state": "running",
                              "detail": "Up"}},
        "engine": {"available": True},
    }


def test_a_loading_service_is_not_ready(monkeypatch):
    monkeypatch.setattr(status_doc, "build_status", lambda settings: _doc("loading"))
    rows, ok = stack.health(load_settings(environ={}))
    assert ok is False
    assert rows[0]["ready"] is False and "not ready (loading)" in rows[0]["detail"]


def test_a_healthy_service_and_running_containers_are_ok(monkeypatch):
    monkeypatch.setattr(status_doc, "build_status", lambda settings: _doc("ok"))
    rows, ok = stack.health(load_settings(environ={}))
    assert ok is True and rows[0]["ready"] is True
