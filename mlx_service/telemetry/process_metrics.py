"""The process's CPU and resident memory on /metrics, where prometheus_client's own
ProcessCollector has nothing to read: it reads /proc, so it is Linux only, and the host
service runs on macOS first. Same series names as on Linux, so one dashboard serves both:
process_cpu_seconds_total (getrusage: user + system) and process_resident_memory_bytes
(macOS: proc_pidinfo's PROC_PIDTASKINFO, as psutil reads it; left out where unavailable).
"""
from __future__ import annotations

import ctypes
import os
import resource
import sys

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

PROC_PIDTASKINFO = 4


class TaskInfo(ctypes.Structure):
    """struct proc_taskinfo (<sys/proc_info.h>)."""
    _fields_ = [("virtual_size", ctypes.c_uint64), ("resident_size", ctypes.c_uint64),
                ("total_user", ctypes.c_uint64), ("total_system", ctypes.c_uint64),
                ("threads_user", ctypes.c_uint64), ("threads_system", ctypes.c_uint64)] + [
                (name, ctypes.c_int32) for name in (
                    "policy", "faults", "pageins", "cow_faults", "messages_sent",
                    "messages_received", "syscalls_mach", "syscalls_unix", "csw", "threadnum",
                    "numrunning", "priority")]


def _libproc():
    if sys.platform != "darwin":
        return None
    try:
        lib = ctypes.CDLL("/usr/lib/libSystem.B.dylib")
        return lib if hasattr(lib, "proc_pidinfo") else None
    except OSError:
        return None


def resident_bytes(lib=None) -> int | None:
    """This process's resident set size in bytes (macOS), or None."""
    lib = lib if lib is not None else _libproc()
    if lib is None:
        return None
    info = TaskInfo()
    got = lib.proc_pidinfo(os.getpid(), PROC_PIDTASKINFO, ctypes.c_uint64(0), ctypes.byref(info),
                           ctypes.sizeof(info))
    return int(info.resident_size) if got == ctypes.sizeof(info) else None


class UsageCollector(Collector):
    def __init__(self):
        self._lib = _libproc()

    def collect(self):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        yield CounterMetricFamily("process_cpu_seconds", "Total user and system CPU time "
                                  "spent in seconds.", value=usage.ru_utime + usage.ru_stime)
        rss = resident_bytes(self._lib)
        if rss is not None:
            yield GaugeMetricFamily("process_resident_memory_bytes", "Resident memory size "
                                    "in bytes.", value=rss)


def register_process_metrics(registry) -> None:
    """CPU and RSS on `registry`: prometheus_client's collector on Linux, ours elsewhere."""
    if sys.platform.startswith("linux"):
        from prometheus_client.process_collector import ProcessCollector
        ProcessCollector(registry=registry)
    else:
        registry.register(UsageCollector())
