"""Which machine the figures come from: CPU model, cores, platform, load average."""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine_info() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(),
            "platform": f"{sys.platform}-{platform.machine()}",
            "python": platform.python_version(), "loadavg_start": loadavg(), "loadavg_end": None}
