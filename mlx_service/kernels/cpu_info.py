"""What the CPU offers, read from /proc/cpuinfo (Linux; elsewhere nothing): the one reader
for the bf16 units (precision.py, the tasks' install hint) and the SIMD level the native
kernels are built for (native_math.py)."""
from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The feature flags of the first CPU: x86's `flags` line or Arm's `Features` line."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return frozenset()
    line = next((l for l in cpuinfo.splitlines() if l.startswith(("flags", "Features"))), "")
    return frozenset(line.partition(":")[2].split())
