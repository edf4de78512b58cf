"""Who holds a TCP port: is it free to bind, and which program listens on it."""
from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

import psutil

WILDCARDS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class Holder:
    pid: int | None
    name: str | None
    cmdline: tuple[str, ...]
    address: str

    def describe(self) -> str:
        if self.pid is None:
            return f"a process we may not inspect (listening on {self.address})"
        cmd = " ".join(self.cmdline) or self.name or "?"
        if len(cmd) > 160:
            cmd = cmd[:157] + "..."
        return f"pid {self.pid} ({cmd})"


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def address_free(address: str, port: int) -> bool:
    """Could a server bind (address, port) now? SO_REUSEADDR, like servers set it, so a
    socket in TIME_WAIT after a restart does not count as held."""
    try:
        sock = socket.socket(_family(address), socket.SOCK_STREAM)
    except OSError:
        return True  # no such family here: nothing can hold it
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        return True
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            return False
        return True  # e.g. EADDRNOTAVAIL: not ours to judge here
    finally:
        sock.close()


def _listeners(port: int) -> list[tuple[int | None, str]]:
    """(pid, ip) of every TCP listener on `port`."""
    found: list[tuple[int | None, str]] = []
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                found.append((conn.pid, conn.laddr.ip))
        return found
    except psutil.AccessDenied:
        pass  # macOS without root: ask each process we may inspect instead
    for proc in psutil.process_iter(["pid"]):
        try:
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                    found.append((proc.pid, conn.laddr.ip))
        except psutil.Error:
            continue
    return found


def port_holders(port: int, addresses: list[str] | None = None) -> list[Holder]:
    """The listeners that keep `port` from being bound on any of `addresses` (all when None):
    those on the same address, and those on a wildcard address."""
    wanted = None if addresses is None else set(addresses)
    any_wildcard = wanted is not None and bool(wanted & set(WILDCARDS))
    holders: dict[tuple[int | None, str], Holder] = {}
    for pid, ip in _listeners(port):
        if wanted is not None and not (any_wildcard or ip in wanted or ip in WILDCARDS
                                       or ip.removeprefix("::ffff:") in wanted):
            continue
        name, cmdline = None, ()
        if pid is not None:
            try:
                proc = psutil.Process(pid)
                name = proc.name()
                cmdline = tuple(proc.cmdline())
            except psutil.Error:
                pass
        holders.setdefault((pid, ip), Holder(pid, name, cmdline, ip))
    return list(holders.values())


def describe_holders(holders: list[Holder]) -> str:
    seen: list[str] = []
    for holder in holders:
        text = holder.describe()
        if text not in seen:
            seen.append(text)
    return "; ".join(seen) if seen else "a program we could not identify"
