"""The service's log file: size rotation, the last lines, and following it like tail -F."""
from __future__ import annotations

import os
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Callable, TextIO

from mlx_service.config import LOG_MAX_BYTES  # the service's own default, one source
LOG_KEEP = 3

def rotate_log(path: Path, max_bytes: int = LOG_MAX_BYTES, keep: int = LOG_KEEP) -> bool:
    """Over `max_bytes`: path -> path.1 -> path.2 ... (keeping `keep`). True when rotated.

    The renaming is logging.handlers.RotatingFileHandler's, the scheme the running service's
    own log handler follows (mlx_service/__main__.py). The size check stays here: a start
    hands the file to the service as its stdout/stderr (a descriptor, not log records), so
    only this check, made before that, can rotate what crashes and tracebacks wrote."""
    path = Path(path)
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    handler = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=max(keep, 1), delay=True)
    try:
        handler.doRollover()
    finally:
        handler.close()
    return True


def tail_lines(path: Path, n: int = 50, start_offset: int = 0) -> list[str]:
    """The last `n` lines of a file (from `start_offset` on), read from the end."""
    if n <= 0:
        return []
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            end = fh.tell()
            pos, data = end, b""
            while pos > start_offset and data.count(b"\n") <= n:
                step = min(65536, pos - start_offset)
                pos -= step
                fh.seek(pos)
                data = fh.read(step) + data
    except FileNotFoundError:
        return []
    return data.decode(errors="replace").splitlines()[-n:]


def follow_log(path: Path, out: TextIO, n: int = 50, poll: float = 0.25,
               stop: Callable[[], bool] = lambda: False) -> None:
    """`tail -F`: the last `n` lines, then whatever is appended; survives rotation."""
    path = Path(path)
    for line in tail_lines(path, n):
        out.write(line + "\n")
    out.flush()
    fh, ino = None, None
    try:
        if path.exists():
            fh = open(path, "rb")
            fh.seek(0, os.SEEK_END)
            ino = os.fstat(fh.fileno()).st_ino
        while not stop():
            if fh is not None:
                chunk = fh.read()
                if chunk:
                    out.write(chunk.decode(errors="replace"))
                    out.flush()
                    continue
            try:
                st = path.stat()
            except FileNotFoundError:
                st = None
            if st is not None and (fh is None or st.st_ino != ino or st.st_size < fh.tell()):
                if fh is not None:
                    fh.close()
                fh = open(path, "rb")  # rotated or recreated: read the new file from its start
                ino = os.fstat(fh.fileno()).st_ino
                continue
            time.sleep(poll)
    finally:
        if fh is not None:
            fh.close()
