"""Is the running service serving the model the settings ask for?

`EMBEDDINGS_MODEL=X inv mlx start` while another model runs must not pass for a start of X:
the running service's /info says which folder it loaded (model_path) and by what name; the
asked model is EMBEDDINGS_MODEL (a folder, compared by its real path, or a hub id, compared by
name). Unset, the bundled model is asked for by default: a service started with another one is
named by the start's "already running" line, not refused (a plain `inv start` after
`EMBEDDINGS_MODEL=X inv mlx start` keeps the model that runs, as it keeps the port).
"""
from __future__ import annotations

from pathlib import Path

from tasks.core.local_http import get_json
from tasks.core.settings import Settings, with_path


def served_model_info(url: str) -> dict | None:
    """The running service's /info (None: no answer, or not a JSON object)."""
    status, body, _ = get_json(with_path(url, "/info"), timeout=3.0)
    return body if status == 200 and isinstance(body, dict) else None


def serves_asked_model(asked: str, info: dict) -> bool:
    """Whether the service described by `info` serves `asked` (EMBEDDINGS_MODEL's value)."""
    folder = Path(asked).expanduser()
    served_path = info.get("model_path")
    if folder.is_dir() and served_path:
        return Path(served_path).resolve() == folder.resolve()
    return info.get("model") == asked


def other_model_sentence(settings: Settings, url: str, pid: int | None = None) -> str | None:
    """One sentence when the service at `url` serves another model than EMBEDDINGS_MODEL asks
    for; None when it serves that one, the variable is unset, or /info does not say."""
    asked = settings.embeddings_model
    info = served_model_info(url) if asked else None
    if not asked or info is None or serves_asked_model(asked, info):
        return None
    running = info.get("model_path") or info.get("model") or "?"
    who = f" (pid {pid})" if pid else ""
    return (f"another model is running at {url}{who}: {running}, not EMBEDDINGS_MODEL="
            f"{asked}; `inv mlx restart` serves the one asked for")
