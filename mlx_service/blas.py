"""Which BLAS MLX's matmuls run on, and the re-exec that swaps in OpenBLAS on Linux.

MLX's Linux CPU wheel links a reference BLAS (~5 GFLOPS). Debian's OpenBLAS exports the
same cblas symbols, so preloading it (LD_PRELOAD) makes MLX call it instead: ~170 GFLOPS
and the model ~19x faster. LD_PRELOAD is only read by the dynamic loader at exec time,
hence the re-exec of the same command line (os.execv keeps the PID, so PID files and
process supervisors keep working).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Mapping, Sequence

# Debian/Ubuntu `libopenblas0-pthread` (the threaded build). MLX_OPENBLAS_PATH overrides.
OPENBLAS_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
)
# Set on the re-exec'd process: guards against a loop if the preload does not stick.
REEXEC_MARKER = "MLX_SERVICE_BLAS_REEXEC"


class BlasError(RuntimeError):
    """MLX_BLAS=openblas was asked for and cannot be had."""


def find_openblas(environ: Mapping[str, str],
                  exists: Callable[[str], bool] = os.path.exists) -> str | None:
    override = environ.get("MLX_OPENBLAS_PATH")
    candidates = (override,) if override else OPENBLAS_CANDIDATES
    return next((path for path in candidates if path and exists(path)), None)


def preload_plan(mode: str, platform: str, environ: Mapping[str, str],
                 exists: Callable[[str], bool] = os.path.exists) -> str | None:
    """The LD_PRELOAD value to re-exec with ("" = unset it), or None to run as we are.

    Pure so it can be unit-tested: mode is auto|openblas|reference.
    """
    if not platform.startswith("linux") or environ.get(REEXEC_MARKER):
        return None
    preloaded = [p for p in environ.get("LD_PRELOAD", "").replace(":", " ").split() if p]
    if mode == "reference":
        # An inherited preload would silently defeat the choice: drop it.
        kept = [p for p in preloaded if "libopenblas" not in os.path.basename(p)]
        return None if kept == preloaded else ":".join(kept)
    if any("libopenblas" in os.path.basename(p) for p in preloaded):
        return None
    library = find_openblas(environ, exists)
    if library is None:
        if mode == "openblas":
            looked = environ.get("MLX_OPENBLAS_PATH") or ", ".join(OPENBLAS_CANDIDATES)
            raise BlasError(f"MLX_BLAS=openblas but no OpenBLAS library was found (looked for {looked}"
                            "); install Debian's libopenblas0-pthread or set MLX_OPENBLAS_PATH")
        return None
    return ":".join([library, *preloaded])


def maybe_reexec(mode: str, args: Sequence[str]) -> None:
    """Re-exec `python -m mlx_service ARGS` with OpenBLAS preloaded when that helps.

    Returns only when no re-exec is needed; raises BlasError when openblas is forced and absent.
    """
    preload = preload_plan(mode, sys.platform, os.environ)
    if preload is None:
        return
    env = dict(os.environ, LD_PRELOAD=preload, **{REEXEC_MARKER: "1"})
    if not preload:
        del env["LD_PRELOAD"]
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "mlx_service", *args], env)


def blas_in_use(maps_path: str = "/proc/self/maps", platform: str = sys.platform) -> str:
    """What this process's matmuls really run on, read from the libraries mapped into it."""
    if platform == "darwin":
        return "accelerate"
    try:
        maps = Path(maps_path).read_text()
    except OSError:
        return "unknown"
    for line in maps.splitlines():
        if "libopenblas" in line:
            return "openblas"
    return "reference"
