"""Watching sources (watchfiles): the service's for `inv mlx start --watch`, and those of
`inv start --watch` (tasks/stack/watch.py).

MLX_SERVICE_SRC names the directory that holds the `mlx_service` package (default: the
repo root). The service runs from there (working directory and PYTHONPATH), and --watch
watches its `mlx_service/` folder; tests point it at a copy so they never edit the repo.
"""
from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import watchfiles

WATCHED_SUFFIXES = (".py",)


def service_src(settings) -> Path:
    return Path(settings.get("MLX_SERVICE_SRC", str(settings.root))).expanduser().resolve()


def watched_dir(settings) -> Path:
    return service_src(settings) / "mlx_service"


class SourceFilter(watchfiles.DefaultFilter):
    """Files with one of `suffixes` (any file when None); editors' swap/backup files and
    __pycache__ are ignored."""

    def __init__(self, suffixes: tuple[str, ...] | None = WATCHED_SUFFIXES):
        super().__init__()
        self.suffixes = suffixes

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        wanted = self.suffixes is None or path.endswith(self.suffixes)
        return wanted and super().__call__(change, path)


class SourceWatcher:
    """Runs watchfiles in a thread; batches of changed paths arrive on `changes`.

    watchfiles already groups a burst (it yields once nothing changed for `step_ms`, at the
    latest after `debounce_ms`); `next_batch` adds a quiet period so an editor's save of
    several files is one restart.
    """

    def __init__(self, *paths: Path, suffixes: tuple[str, ...] | None = WATCHED_SUFFIXES,
                 debounce_ms: int = 1600, step_ms: int = 200, quiet_s: float = 0.3):
        self.paths = [Path(p) for p in paths]
        self.filter = SourceFilter(suffixes)
        self.debounce_ms, self.step_ms, self.quiet_s = debounce_ms, step_ms, quiet_s
        self.changes: "queue.Queue[set[tuple[watchfiles.Change, str]]]" = queue.Queue()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlx-watch", daemon=True)

    def start(self) -> "SourceWatcher":
        for path in self.paths:
            if not path.is_dir():
                raise FileNotFoundError(f"nothing to watch: {path} is not a directory")
        self._thread.start()
        self._ready.wait(5)
        return self

    def _run(self) -> None:
        try:
            self._ready.set()
            for batch in watchfiles.watch(*self.paths, watch_filter=self.filter,
                                          debounce=self.debounce_ms, step=self.step_ms,
                                          stop_event=self._stop, rust_timeout=500,
                                          yield_on_timeout=False, raise_interrupt=False):
                if batch:
                    self.changes.put(batch)
        except BaseException as exc:  # reported by the supervisor, which keeps running
            self.error = exc

    def next_batch(self, timeout: float) -> set[str] | None:
        """Changed paths (after a quiet period), or None when nothing changed in `timeout`."""
        try:
            batch = self.changes.get(timeout=timeout)
        except queue.Empty:
            return None
        paths = {p for _, p in batch}
        deadline = time.monotonic() + self.quiet_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return paths
            try:
                paths |= {p for _, p in self.changes.get(timeout=left)}
                deadline = time.monotonic() + self.quiet_s
            except queue.Empty:
                return paths

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def summarize(paths: set[str], root: Path) -> str:
    names = []
    for p in sorted(paths):
        try:
            names.append(str(Path(p).relative_to(root)))
        except ValueError:
            names.append(p)
    if len(names) > 3:
        return ", ".join(names[:3]) + f" and {len(names) - 3} more"
    return ", ".join(names)
