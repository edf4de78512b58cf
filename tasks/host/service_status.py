"""The host service's status document (`inv mlx status --json`, and the stack's view)."""
from __future__ import annotations

from pathlib import Path

from tasks.core.say import Say
from tasks.core.settings import Settings
from tasks.host.bind_addresses import bind_addresses
from tasks.host.health import foreign_listener, is_healthy, probe_auth, probe_health
from tasks.host.launch import service_url
from tasks.host.pidfile import RunMode, seconds_since_start
from tasks.host.pidfile_lock import lock_if_free
from tasks.host.service_origin import other_checkout_service
from tasks.host.service_state import inspect


def service_status(settings: Settings, *, cleanup: bool = True, say: Say | None = None) -> dict:
    """The service's status document (the seed's keys plus health, uptime, stale, ...).
    A stale PID file is removed only when the lock is free (another task may be mid-start)."""
    if cleanup:
        with lock_if_free(settings.mlx_pidfile) as held:
            state = inspect(settings, cleanup=held, say=say)
    else:
        state = inspect(settings, cleanup=False, say=say)
    record = state.record
    live = record if (state.running or state.supervised) else None
    bind = list(live.bind) if live and live.bind else bind_addresses(settings)
    url = live.url if live and live.url else service_url(settings, bind)
    status, body, _ = probe_health(url, timeout=2.0)
    port = live.port if live and live.port else settings.mlx_port
    # Another program on the port answers, but it is not the service: not "responding".
    foreign = foreign_listener(port, status, body, bind)
    auth = (probe_auth(url, settings.mlx_auth_headers())
            if status is not None and not foreign else None)
    # The embedding service answers, but this checkout did not start it: whose is it?
    other = (other_checkout_service(settings, port, bind)
             if status is not None and not foreign and not state.running else None)
    uptime = None
    if state.running and record.create_time:
        uptime = round(seconds_since_start(record.service), 1)
    return {
        "running": state.running,
        "pid": record.pid if state.running else None,
        "url": url,
        "responding": status is not None and foreign is None,
        "foreign": foreign,
        "other_checkout": other,
        "healthy": is_healthy(status, body),
        "auth": auth,
        "log": str(Path(live.log) if live and live.log else settings.mlx_log),
        "health": body,
        "uptime": uptime,
        "stale": state.stale,
        "restarts": record.restarts if live else 0,
        "bind": bind,
        "port": port,
        "mode": live.mode if live else None,
        "watching": bool(live and live.mode == RunMode.WATCH and state.supervised),
    }


def format_status(s: dict) -> str:
    """`inv mlx status` as text: the document above, read for a person."""
    lines = []
    if s["running"]:
        up = s["uptime"]
        up_text = f", up {int(up // 60)}m{int(up % 60):02d}s" if up is not None else ""
        lines.append(f"mlx service: running (pid {s['pid']}{up_text}, {s['mode']}) at {s['url']}")
    elif s.get("watching"):
        lines.append("mlx service: not running; its watcher waits for a source change")
    else:
        lines.append(f"mlx service: not running ({s['url']})")
    if s["healthy"]:
        h = s["health"] or {}
        reranker = (f", reranker {h['rerank_model']}" if h.get("rerank_model")
                    else ", no reranker")
        lines.append(f"  health: ok (model {h.get('model', '?')}, "
                     f"{h.get('dimensions', '?')} dimensions{reranker})")
    elif s.get("foreign"):
        lines.append(f"  health: {s['foreign']}")
    elif s["responding"]:
        status = (s["health"] or {}).get("status", "unknown")
        lines.append(f"  health: responding, not ready ({status})")
    else:
        lines.append("  health: not responding")
    if s.get("other_checkout"):
        lines.append(f"  owner: another checkout's service ({s['other_checkout']}), "
                     "not this checkout's")
    if s.get("auth") in ("missing", "refused"):
        lines.append("  auth: the service wants an API key; MLX_API_KEY is "
                     + ("not set here" if s["auth"] == "missing" else "not its key"))
    if s["stale"]:
        lines.append(f"  stale PID file: {s['stale']}")
    lines.append(f"  listen: {', '.join(s['bind'])} port {s['port']}")
    if s["mode"] == "watch":
        lines.append(f"  restarts (watch): {s['restarts']}")
    lines.append(f"  log: {s['log']}")
    return "\n".join(lines)
