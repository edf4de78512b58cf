"""`inv status` as text: the status document (status_doc.py) read for a person."""
from __future__ import annotations

from tasks.host.reranker_info import reranker_line
from tasks.stack.table import format_table


def status_text(doc: dict) -> str:
    """The lines `inv status` prints for `doc` (`inv status --json` prints `doc` itself)."""
    mlx, engine = doc["mlx"], doc["engine"]
    out = [f"project   {doc['project']}",
           "engine    " + (f"{engine['kind']} {engine['version']} (Compose {engine['compose']})"
                           if engine["available"] else f"not available: {engine['error']}"),
           f"mlx       {'running' if mlx['running'] else 'not running'}"
           f"{' (pid %s)' % mlx['pid'] if mlx['pid'] else ''}, "
           f"{'responding' if mlx['responding'] else 'not responding'} at {mlx['url']}"
           f"; log {mlx['log']}"]
    if mlx.get("reranker"):
        out.append(f"          {reranker_line(mlx['reranker'])}")
    if mlx.get("foreign"):
        out.append(f"          {mlx['foreign']}")
    if mlx.get("other_checkout"):
        out.append(f"          it is another checkout's service ({mlx['other_checkout']}), "
                   "not this checkout's")
    # "gone": inv start started it and its container was removed since (not merely absent).
    rows = [{"service": name, **facts, "state": "gone" if facts.get("gone") else facts["state"]}
            for name, facts in doc["services"].items()]
    out += ["", format_table(rows, ["service", "state", "running", "healthy", "ready", "port",
                                    "container"]), ""]
    out.append("connectivity  " + "  ".join(f"{k}={'yes' if v else 'no'}"
                                            for k, v in doc["connectivity"].items()))
    out.append("ports         " + "  ".join(f"{k}={v}" for k, v in doc["ports"].items()))
    scraped = doc["services"].get("prometheus", {}).get("targets")
    if scraped:  # what Prometheus saw at its last scrape of each job
        out.append("scraped       " + "  ".join(f"{job}={health}"
                                                for job, health in scraped.items()))
    return "\n".join(out)
