"""The per-machine cache of BLAS probe results (mlx_service/kernels/blas.py): one small JSON file in
the venv, keyed by the CPU, the library file and MLX's version, so a probe runs once."""
from __future__ import annotations

import glob
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Mapping, Protocol

CACHE_NAME = "mlx-blas-choice.json"
CACHE_SCHEMA = 2  # 2: probes give the native bf16 GEMM's figure too


class Candidate(Protocol):
    """What a cache entry is keyed by (blas.Candidate; blas.py imports this module)."""
    name: str
    identity: str


def cache_key(machine: str, candidate: Candidate) -> str:
    text = f"{machine}\n{candidate.name}\n{candidate.identity}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cached_probes(cache: Mapping, machine: str,
                  candidates: Mapping[str, Candidate]) -> dict[str, dict]:
    """The cache's probe results that still hold for this machine and these library versions."""
    entries = cache.get("entries", {}) if cache.get("schema") == CACHE_SCHEMA else {}
    out = {}
    for name, candidate in candidates.items():
        hit = entries.get(cache_key(machine, candidate))
        if isinstance(hit, dict):
            out[name] = hit
    return out


def cache_path(environ: Mapping[str, str], prefix: str = sys.prefix) -> Path:
    return Path(environ.get("MLX_BLAS_CACHE") or os.path.join(prefix, CACHE_NAME))


def read_cache(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def write_cache(path: Path, cache: Mapping, machine: str, candidates: Mapping[str, Candidate],
                probes: Mapping[str, Mapping]) -> None:
    """Add fresh probe results; atomic, and silent when the venv is read-only.

    A failure is kept only beside a success of the same round: when every probe failed, the
    probe's own environment was broken (MLX not yet installed in a venv being rebuilt), not
    the libraries, and a cached verdict would pin MLX's slow BLAS until the file is deleted."""
    entries = dict(cache.get("entries", {})) if cache.get("schema") == CACHE_SCHEMA else {}
    if not any("gflops" in result for result in probes.values()):
        probes = {}
    for name, result in probes.items():
        entries[cache_key(machine, candidates[name])] = {**result, "name": name,
                                                         "measured": time.time()}
    write_json(path, {"schema": CACHE_SCHEMA, "entries": entries})


def write_json(path: Path, doc: Mapping) -> None:
    """Atomic, and silent when the venv is read-only (a cache, not a record)."""
    tmp = Path(f"{path}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def library_file_identity(path: str) -> str:
    """A library file as a cache key part: real path, size, mtime ("" for none)."""
    if not path:
        return ""
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return f"{path} missing"
    return f"{real} {st.st_size} {st.st_mtime_ns}"


# Settings that change what a library measures without changing the CPU or the file: which
# kernels OpenBLAS runs (some machines force an older core type for an older OpenBLAS).
MEASURED_SETTINGS = ("OPENBLAS_CORETYPE",)


def machine_identity(cpuinfo: str = "/proc/cpuinfo",
                     environ: Mapping[str, str] = os.environ) -> str:
    """The CPU model and its feature flags, how many cores this process may use, and the
    settings in MEASURED_SETTINGS that are set."""
    model = flags = ""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and not model:
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = hashlib.sha256(value.strip().encode()).hexdigest()[:12]
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    settings = "".join(f" {k}:{environ[k]}" for k in MEASURED_SETTINGS if environ.get(k))
    return f"{model} flags:{flags} cores:{cores}{settings}"


def mlx_version(prefix: str = sys.prefix) -> str:
    """MLX's version in the venv at prefix (its dist-info), part of every cache key."""
    found = sorted(glob.glob(os.path.join(prefix, "lib", "python*", "site-packages",
                                          "mlx-*.dist-info")))
    return found[-1].rsplit("mlx-", 1)[1].removesuffix(".dist-info") if found else ""
