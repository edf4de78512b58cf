"""Whose embedding service answers on the port: this checkout's, or another checkout's.

Two checkouts of the project on one machine share the default port. The PID file tells this
checkout's service apart; a service that answers without being in it runs from somewhere:
a process started from another checkout runs in that checkout's folder (a start's cwd is
MLX_SERVICE_SRC, the checkout by default). Such a service is reported, never taken for ours.
"""
from __future__ import annotations

import os

import psutil

from tasks.core.settings import Settings
from tasks.host.port_holders import port_holders
from tasks.host.service_state import MARKER
from tasks.host.watch import service_src


def _folder(pid: int) -> str | None:
    try:
        return psutil.Process(pid).cwd()
    except (psutil.Error, OSError):
        return None  # gone, or not ours to inspect: no claim either way


def other_checkout_service(settings: Settings, port: int,
                           bind: list[str] | None = None) -> str | None:
    """'pid P, started from FOLDER' when the embedding service listening on `port` runs from
    another folder than this checkout's service sources; None when it is ours, or unknown."""
    here = os.path.realpath(service_src(settings))
    for holder in port_holders(port, bind):
        if holder.pid is None or not any(MARKER in part for part in holder.cmdline):
            continue
        folder = _folder(holder.pid)
        if folder and os.path.realpath(folder) != here:
            return f"pid {holder.pid}, started from {folder}"
    return None
