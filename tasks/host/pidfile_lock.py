"""The lock beside a PID file: one task at a time starts, stops or installs the service, and a
waiter can name who holds it."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from tasks.core.errors import TaskError
from tasks.core.say import Say


def lock_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".lock")


class LockTimeout(TaskError, RuntimeError):
    """Another task held the PID file's lock for longer than we wait; one sentence."""


def lock_holder(path: Path) -> str | None:
    """Who last took the lock, as its holder wrote it ("pid 123 (inv mlx start)")."""
    try:
        text = lock_path(path).read_text().strip()
    except OSError:
        return None
    return text or None


@contextlib.contextmanager
def locked(path: Path, timeout: float = 30.0, *, doing: str = "",
           waiting: Say | None = None) -> Iterator[None]:
    """Hold an exclusive advisory lock beside the PID file (two tasks at once: one waits).

    filelock's FileLock takes flock(2) on the lock file, as this module always did, so a
    task of an older checkout and this one still exclude each other. The holder writes its
    pid and `doing` into the lock file, so a waiter can name it: `waiting` hears one line
    when we have to wait, and LockTimeout says who held it."""
    lp = lock_path(path)
    lp.parent.mkdir(parents=True, exist_ok=True)

    def name_the_holder(fd: int) -> None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({doing or 'inv'})\n".encode(), 0)

    def timed_out() -> LockTimeout:
        holder = lock_holder(path) or "another task"
        return LockTimeout(f"{holder} has held {lp} for more than {timeout:g}s; try again "
                           f"when it has finished")

    # preserve_lock_file: waiters keep the same inode, and the holder's line stays readable.
    lock = FileLock(lp, mode=0o644, preserve_lock_file=True, on_acquired=name_the_holder)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        if timeout <= 0:
            raise timed_out() from None
        if waiting is not None:
            holder = lock_holder(path) or "another task"
            waiting(f"waiting for {holder}, which holds {lp} (up to {timeout:g}s)")
        try:
            lock.acquire(timeout=timeout, poll_interval=0.05)
        except Timeout:
            raise timed_out() from None
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def lock_if_free(path: Path, timeout: float = 1.0) -> Iterator[bool]:
    """The lock when it can be had within `timeout`: yields True while held, else False."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(locked(path, timeout, doing="inv mlx status"))
        except LockTimeout:
            yield False
        else:
            yield True
