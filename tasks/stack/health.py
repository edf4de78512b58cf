"""`inv health`: one row per part of the stack, and whether all of it is ready."""
from __future__ import annotations

from tasks.core.settings import Settings
from tasks.host.reranker_info import reranker_line
from tasks.stack import status_doc
from tasks.stack.container import ContainerState
from tasks.stack.table import shorten


def health(settings: Settings) -> tuple[list[dict], bool]:
    """One row per part of the stack; ok when the host service answers and every service
    that has a container runs and answers its probe (and at least one does)."""
    doc = status_doc.build_status(settings)  # looked up at call time: tests replace it
    mlx = doc["mlx"]
    other = mlx.get("other_checkout")
    # /health said ok (loaded, worker alive), and it is this checkout's service.
    mlx_ready = bool(mlx.get("healthy")) and not other
    detail = mlx["url"]
    if mlx.get("foreign"):
        detail = mlx["foreign"]
    elif other:
        detail += (f" answers, but it is another checkout's embedding service ({other}); "
                   "this checkout's is not running")
    elif mlx["responding"] and not mlx_ready:
        detail += f" answers, but not ready ({(mlx.get('health') or {}).get('status', 'not our service')})"
    elif not mlx["responding"]:
        detail += " does not answer"
    if mlx_ready and mlx.get("reranker"):
        detail += f"; {reranker_line(mlx['reranker'])}"
    rows = [{"name": "mlx (host)", "running": mlx["running"], "healthy": mlx.get("healthy"),
             "ready": mlx_ready, "detail": detail, "problem": not mlx_ready}]
    ok = mlx_ready
    started = 0
    for name, svc in doc.get("services", {}).items():
        failing = False
        if svc["state"] != ContainerState.ABSENT or svc.get("gone"):
            started += 1
            # A stopped or exited container of the stack is a problem too, not only one that
            # runs without answering; so is one `inv start` started that was removed since.
            failing = not (svc["running"] and svc["ready"])
            ok = ok and not failing
        rows.append({"name": name, "running": svc["running"], "healthy": svc["healthy"],
                     "ready": svc["ready"], "detail": shorten(svc.get("detail") or svc["state"]),
                     "problem": failing, "state": svc["state"],
                     "why": " ".join(str(svc.get("detail") or svc["state"]).split())})
    if not doc.get("engine", {}).get("available", True):
        rows.append({"name": "engine", "running": False, "healthy": None, "ready": False,
                     "detail": doc["engine"].get("error") or "no engine", "problem": True})
        ok = False
    return rows, ok and started > 0


def unhealthy_summary(rows: list[dict]) -> str:
    """One line naming each part that is not ready and why (`inv health`'s exit message)."""
    parts = []
    for row in rows:
        if not row.get("problem"):
            continue
        state = row.get("state")
        said = row.get("why") or row["detail"]
        why = said if row.get("running") or state is None or said == state else f"{state}: {said}"
        parts.append(f"{row['name']} ({why})")
    if parts:
        return "; ".join(parts)
    return "no container of the stack exists (inv start starts them)"
