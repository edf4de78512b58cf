"""Which BLAS MLX's matmuls run on: chosen by measurement, swapped in by a same-PID re-exec.

MLX's Linux CPU wheel links a reference BLAS (~5 GFLOPS). Debian's OpenBLAS and Intel's oneMKL
(the `mkl` wheel: `inv mlx install --blas mkl`) export the same cblas symbols, so preloading
one (LD_PRELOAD) makes MLX call it instead. Which is fastest depends on the CPU (oneMKL leads
on Intel Xeons, may trail OpenBLAS on AMD EPYC), so MLX_BLAS=auto measures: a short GEMM probe
on the model's own shapes, one subprocess per library (a preload only takes effect at exec
time), cached per machine and library version in a small JSON file in the venv. LD_PRELOAD is
only read by the dynamic loader at exec time, hence the re-exec of the same command line
(os.execve keeps the PID, so PID files and process supervisors keep working).

`decide` is the one pure function that picks; the rest gathers its inputs or acts on it. The
probe's own process is mlx_service/kernels/blas_probe.py, the per-machine cache
mlx_service/kernels/blas_cache.py.
"""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from mlx_service.kernels.blas_cache import (cache_path, cached_probes, library_file_identity,
                                    machine_identity, mlx_version, read_cache, write_cache)
from mlx_service.kernels.precision import BF16_MARGIN, bf16_pays

# Debian/Ubuntu `libopenblas0-pthread` (the threaded build). MLX_OPENBLAS_PATH overrides.
OPENBLAS_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
)
# The `mkl` wheel puts its runtime under the venv's lib/. MLX_MKL_PATH overrides.
MKL_GLOB = "lib/libmkl_rt.so.*"
# Library names, in the order a tie is broken: no extra package first.
LIBRARIES = ("openblas", "mkl", "reference")
# The file name each library is recognised by in LD_PRELOAD; also threadpoolctl's
# internal_api name for it.
MARKERS = {"openblas": "libopenblas", "mkl": "libmkl_rt"}
INSTALL_HINTS = {
    "openblas": "install Debian's libopenblas0-pthread or set MLX_OPENBLAS_PATH",
    "mkl": "add it with `inv mlx install --blas mkl` or set MLX_MKL_PATH",
}
# The model's (MiniLM's) matmul shapes, M x K x N: QKV, FFN in, FFN out at 2048 rows.
PROBE_SHAPES = ((2048, 384, 1152), (2048, 384, 1536), (2048, 1536, 384))
PROBE_BUDGET_S = 0.3     # GEMM seconds per library; the import of MLX comes on top
PROBE_TIMEOUT_S = 30.0
# Set on the re-exec'd process: guards against a loop if the preload does not stick.
REEXEC_MARKER = "MLX_SERVICE_BLAS_REEXEC"
# The decision as JSON, for /info of the process that acts on it (set before any re-exec).
CHOICE_ENV = "MLX_SERVICE_BLAS_CHOICE"


class BlasError(RuntimeError):
    """MLX_BLAS names a library that cannot be had."""


@dataclass(frozen=True)
class Candidate:
    name: str                 # openblas | mkl | reference
    path: str | None          # the library to preload; None for MLX's own
    identity: str = ""        # what invalidates a cached probe: file, size, mtime, version


@dataclass(frozen=True)
class Decision:
    library: str              # openblas | mkl | reference | accelerate
    path: str | None          # what to preload (None: nothing)
    reason: str               # one sentence for /info and inv verify
    gflops: dict = field(default_factory=dict)   # probe figures the choice was made on
    to_probe: tuple[str, ...] = ()  # non-empty: probe these and decide again

    def as_dict(self) -> dict:
        doc = asdict(self)
        doc.pop("to_probe")
        return doc


# --- finding the libraries ----------------------------------------------------------------------
def find_openblas(environ: Mapping[str, str],
                  exists: Callable[[str], bool] = os.path.exists) -> str | None:
    override = environ.get("MLX_OPENBLAS_PATH")
    candidates = (override,) if override else OPENBLAS_CANDIDATES
    return next((path for path in candidates if path and exists(path)), None)


def find_mkl(environ: Mapping[str, str], prefix: str = sys.prefix,
             exists: Callable[[str], bool] = os.path.exists,
             matches: Callable[[str], list[str]] = glob.glob) -> str | None:
    override = environ.get("MLX_MKL_PATH")
    if override:
        return override if exists(override) else None
    found = sorted(matches(os.path.join(prefix, MKL_GLOB)))
    return found[-1] if found else None


def library_identity(path: str | None, mlx_version: str = "") -> str:
    """What a cached probe of this library depends on: the real file, its size and mtime."""
    if path is None:
        return f"mlx {mlx_version}"
    identity = library_file_identity(path)
    return identity if identity.endswith(" missing") else f"{identity} mlx {mlx_version}"


def find_candidates(environ: Mapping[str, str], prefix: str = sys.prefix,
                    mlx_version: str = "") -> dict[str, Candidate]:
    """The libraries this process could run on, MLX's own always among them."""
    paths = {"openblas": find_openblas(environ), "mkl": find_mkl(environ, prefix),
             "reference": None}
    return {name: Candidate(name, path, library_identity(path, mlx_version))
            for name, path in paths.items() if name == "reference" or path}


def preloaded_library(environ: Mapping[str, str]) -> str | None:
    """A BLAS the user already put in LD_PRELOAD (auto respects it)."""
    for entry in _preload_entries(environ):
        for name, marker in MARKERS.items():
            if marker in os.path.basename(entry):
                return name
    return None


def _preload_entries(environ: Mapping[str, str]) -> list[str]:
    return [p for p in environ.get("LD_PRELOAD", "").replace(":", " ").split() if p]


# --- the decision (pure) ------------------------------------------------------------------------
def _figure(result: Mapping | None) -> float | None:
    value = (result or {}).get("gflops")
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def _summary(results: Mapping[str, Mapping]) -> dict[str, float | str]:
    return {name: (round(_figure(r), 1) if _figure(r) else f"failed: {r.get('error', '?')}")
            for name, r in results.items()}


def decide(mode: str, platform: str, candidates: Mapping[str, Candidate],
           probes: Mapping[str, Mapping], cache: Mapping[str, Mapping],
           preloaded: str | None = None, prefer_mkl: str | None = None) -> Decision:
    """Which library to run on, and why.

    mode: auto | openblas | mkl | reference. candidates: what was found (find_candidates).
    probes / cache: {name: {"gflops": mean GFLOPS on the model's shapes} or {"error": ...}},
    fresh from this start / from the cache (fresh wins). preloaded: a BLAS the caller's own
    LD_PRELOAD already holds. When auto needs figures it has not got, the Decision's to_probe
    names them: probe those and call again with the results.
    """
    if platform == "darwin":
        return Decision("accelerate", None, "macOS: MLX uses Accelerate and Metal")
    if not platform.startswith("linux"):
        return Decision("reference", None, f"no BLAS choice on {platform}")
    if mode != "auto":
        return _forced(mode, candidates)
    if preloaded:  # path None: the user's own LD_PRELOAD entry stays as it is
        return Decision(preloaded, None, f"auto: {preloaded} is already in LD_PRELOAD")
    if len(candidates) == 1:
        only = next(iter(candidates))
        return Decision(only, candidates[only].path,
                        f"auto: {only} is the only library found; for a faster one, "
                        f"{INSTALL_HINTS['openblas']}")
    results = {**cache, **probes}
    missing = tuple(n for n in LIBRARIES if n in candidates and (
        n not in results or (prefer_mkl and n == "mkl" and _figure(results[n])
                             and "bf16_gflops" not in results[n])))  # a probe before bf16's
    if missing:
        return Decision("reference", None, "auto: not measured yet", to_probe=missing)
    ranked = sorted((n for n in LIBRARIES if n in candidates and _figure(results[n])),
                    key=lambda n: (-_figure(results[n]), LIBRARIES.index(n)))
    figures = _summary({n: results[n] for n in LIBRARIES if n in candidates})
    if not ranked:
        return Decision("reference", None, "auto: every probe failed; MLX's own BLAS",
                        gflops=figures)
    best = ranked[0]
    # Our own bf16 GEMM (native_bf16.py) runs beside any of them: oneMKL is kept for its
    # bf16 only where that beats the faster of the best float32 and the native bf16.
    native = max((_bf16_figure(r, NATIVE_BF16) or 0.0 for r in results.values()), default=0.0)
    if native:
        figures["native_bf16"] = round(native, 1)
    bf16 = _bf16_figure(results.get("mkl")) if prefer_mkl and "mkl" in ranked else None
    if bf16 is not None:
        figures["mkl_bf16"] = round(bf16, 1)
        rival = max(_figure(results[best]), native)
        versus = (f"oneMKL's bf16 GEMM {bf16:.0f} GFLOPS vs " +
                  (f"the native bf16 GEMM's {native:.0f}" if native > _figure(results[best])
                   else f"{best}'s float32 {_figure(results[best]):.0f}"))
        if bf16_pays(rival, bf16, faster_is_larger=True):
            return Decision("mkl", candidates["mkl"].path,
                            f"{prefer_mkl}; its probe loaded it and computed right: {versus}",
                            gflops=figures)
    others = ", ".join(f"{n} {_figure(results[n]):.0f}" for n in ranked[1:])
    source = "measured now" if best in probes else "cached probe"
    kernels = results[best].get("kernels")
    named = f"{best} ({kernels})" if kernels else best
    reason = (f"auto: fastest on the model's matmul shapes ({source}): {named} "
              f"{_figure(results[best]):.0f} GFLOPS" + (f" vs {others}" if others else ""))
    if bf16 is not None:  # bf16 did not pay: oneMKL is not kept for it
        reason += f"{NOT_KEPT}{versus}, under {BF16_MARGIN}x"
    return Decision(best, candidates[best].path, reason, gflops=figures)


NATIVE_BF16 = "native_bf16_gflops"  # a probe's figure for the native bf16 GEMM
NATIVE_BF16_FLAG = "--native-bf16"   # asks the probe's process for that figure


def _bf16_figure(result: Mapping | None, key: str = "bf16_gflops") -> float | None:
    value = (result or {}).get(key)
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def _forced(mode: str, candidates: Mapping[str, Candidate]) -> Decision:
    if mode not in LIBRARIES:
        raise BlasError(f"MLX_BLAS={mode!r} is not one of auto, {', '.join(LIBRARIES)}")
    if mode not in candidates:
        raise BlasError(f"MLX_BLAS={mode} but no {mode} library was found; {INSTALL_HINTS[mode]}")
    return Decision(mode, candidates[mode].path, f"MLX_BLAS={mode}")


def preload_for(decision: Decision, environ: Mapping[str, str]) -> str | None:
    """The LD_PRELOAD value to re-exec with ("" = unset it), or None to run as we are."""
    entries = _preload_entries(environ)
    if decision.path is None and decision.library in MARKERS:
        return None  # auto kept the BLAS the user preloaded
    others = [p for p in entries if not any(m in os.path.basename(p) for m in MARKERS.values())]
    wanted = [decision.path] if decision.path else []
    if decision.path and decision.path in entries and len(entries) - len(others) == 1:
        return None  # already in, and no other BLAS beside it
    value = wanted + others
    return None if value == entries else ":".join(value)


def thread_env(library: str, environ: Mapping[str, str]) -> dict[str, str]:
    """Environment the chosen library runs best with here (the user's settings win).

    Lanes (fast_bert.Lanes) run one forward pass per core, each on one BLAS thread
    (fast_bert.BlasThreads sets it per pass), so the library's own threads must not spin on
    the core a lane needs: Intel OpenMP's workers wait 200 ms spinning by default.
    """
    if library == "mkl":
        wanted = {"KMP_BLOCKTIME": "0"}
        return {k: v for k, v in wanted.items() if k not in environ}
    return {}


# --- the probe, in a subprocess per library ------------------------------------------------------
def probe_library(candidate: Candidate, environ: Mapping[str, str],
                  python: str = sys.executable, timeout: float = PROBE_TIMEOUT_S) -> dict:
    """Run blas_probe.probe_gemms in a subprocess with this candidate preloaded (and nothing else)."""
    env = {k: v for k, v in environ.items() if k not in (REEXEC_MARKER, CHOICE_ENV)}
    preload = preload_for(Decision(candidate.name, candidate.path, "probe"), env)
    if preload is not None:
        env["LD_PRELOAD"] = preload
    if not env.get("LD_PRELOAD"):
        env.pop("LD_PRELOAD", None)
    # One thread each, as a lane runs. oneMKL's bf16 GEMM follows OpenMP's count, not its
    # own (measured: with MKL_NUM_THREADS=1 it still ran on both cores), hence OMP_NUM_THREADS.
    env.update(thread_env(candidate.name, env), OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               OMP_NUM_THREADS="1")
    package_root = str(Path(__file__).resolve().parents[2])  # the folder holding mlx_service/
    # The native bf16 GEMM's figure is the same under any BLAS: measured once, in the probe
    # of MLX's own BLAS (a candidate wherever there is a choice to make).
    extra = [NATIVE_BF16_FLAG] if candidate.name == "reference" else []
    try:
        done = subprocess.run([python, "-m", "mlx_service.kernels.blas_probe", *extra], env=env,
                              cwd=package_root, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"probe did not finish: {exc}"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return {"error": last[:200]}
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "probe printed no result"}
    if result.get("library") != candidate.name:
        return {"error": f"asked for {candidate.name}, the probe ran on {result.get('library')}"}
    return result


# --- acting on it --------------------------------------------------------------------------------
def choose(mode: str, environ: Mapping[str, str] = os.environ, platform: str = sys.platform,
           say: Callable[[str], None] = lambda line: None,
           python: str = sys.executable, precision: str = "auto") -> Decision:
    """Gather the inputs (libraries found, cache, probes when needed) and decide.

    python: the interpreter of the venv that will run MLX (the probe runs there, the cache
    and oneMKL live there); this process's own by default. precision: Config's MLX_PRECISION
    (fp32 never needs oneMKL's bf16 GEMM).
    """
    prefix = sys.prefix if python == sys.executable else str(Path(python).parent.parent)
    candidates = find_candidates(environ, prefix, mlx_version(prefix))
    preloaded = preloaded_library(environ)
    machine = machine_identity()
    path = cache_path(environ, prefix)
    cache = read_cache(path)
    hits = cached_probes(cache, machine, candidates)
    prefer_mkl = None
    if mode == "auto" and platform.startswith("linux") and not preloaded:
        from mlx_service.kernels.precision import cpu_bf16_units, wants_onemkl
        # bf16 units: oneMKL's bf16 GEMM may beat any float32 one (precision.py); decide
        # takes it only after its probe loaded it, computed right and measured bf16 faster.
        prefer_mkl = wants_onemkl(precision, cpu_bf16_units(),
                                  "mkl" in candidates)
    decision = decide(mode, platform, candidates, {}, hits, preloaded, prefer_mkl)
    if not decision.to_probe:
        return decision
    say(f"measuring BLAS libraries on the model's shapes: {', '.join(decision.to_probe)}")
    probes = {name: probe_library(candidates[name], environ, python)
              for name in decision.to_probe}
    write_cache(path, cache, machine, candidates, probes)
    return decide(mode, platform, candidates, probes, hits, preloaded, prefer_mkl)


def exec_env(decision: Decision, environ: Mapping[str, str]) -> dict[str, str] | None:
    """The environment to re-exec with so that the decision takes effect, or None: as we are."""
    preload = preload_for(decision, environ)
    if preload is None:
        return None
    env = dict(environ, LD_PRELOAD=preload, **{REEXEC_MARKER: "1"})
    env.update(thread_env(decision.library, environ))
    if not preload:
        del env["LD_PRELOAD"]
    return env


def maybe_reexec(mode: str, args: Sequence[str], command: Sequence[str] | None = None,
                 say: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
                 precision: str = "auto") -> None:
    """Re-exec `python -m mlx_service ARGS` (or `command`) with the chosen BLAS preloaded.

    Returns only when no re-exec is needed; raises BlasError when a forced library is absent.
    The decision travels in CHOICE_ENV for current_choice() (/info).
    """
    if os.environ.get(REEXEC_MARKER):
        return
    decision = choose(mode, os.environ, sys.platform, say, precision=precision)
    os.environ[CHOICE_ENV] = json.dumps(decision.as_dict())
    env = exec_env(decision, os.environ) if sys.platform.startswith("linux") else None
    if env is None:
        return
    argv = list(command) if command else [sys.executable, "-m", "mlx_service", *args]
    sys.stderr.flush()
    os.execve(argv[0], argv, env)


NOT_KEPT = "; not kept for bf16: "


def not_kept_for_bf16(reason: str) -> str | None:
    """From a decision's reason, why oneMKL was not kept for its bf16 GEMM (None: it was not
    weighed, or it was kept)."""
    return reason.split(NOT_KEPT, 1)[1] if NOT_KEPT in reason else None


def recorded_choice(environ: Mapping[str, str] = os.environ) -> dict:
    """The decision this process was started with (CHOICE_ENV); {} when none was made."""
    try:
        choice = json.loads(environ.get(CHOICE_ENV) or "{}")
    except ValueError:
        return {}
    return choice if isinstance(choice, dict) else {}


def current_choice(environ: Mapping[str, str] = os.environ) -> dict:
    """What this process runs on and why, for /info: {library, path, reason, gflops,
    kernels}. The loaded libraries are walked once for both the library and its kernels."""
    infos = loaded_libraries()
    in_use = blas_in_use(environ=environ, infos=infos)
    choice = recorded_choice(environ) or {
        "library": in_use, "path": None, "reason": "no choice made in this process",
        "gflops": {}}
    if choice.get("library") != in_use and sys.platform != "darwin":
        choice["reason"] += f" (but {in_use} is what is loaded)"
    return {**choice, "library": in_use, "kernels": blas_kernels(environ, infos)}


def loaded_libraries() -> list | None:
    """threadpoolctl's info on every loaded library (about 0.6 ms); None without it."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return threadpool_info()


def blas_kernels(environ: Mapping[str, str] = os.environ, infos: list | None = None
                 ) -> str | None:
    """Which of its kernels the matmul BLAS runs, where it says (OpenBLAS's core type, half
    the speed or twice it on the same CPU), and whether the environment forced them."""
    infos = loaded_libraries() if infos is None else infos
    found = matmul_blas(infos, preloaded_paths(environ)) if infos else None
    return describe_kernels(found, environ) if found else None


def describe_kernels(info: Mapping, environ: Mapping[str, str]) -> str | None:
    """threadpoolctl's `architecture` of a BLAS, with the OPENBLAS_CORETYPE that forced it."""
    core = info.get("architecture")
    if not core:
        return None
    forced = environ.get("OPENBLAS_CORETYPE") if info.get("internal_api") == "openblas" else None
    return f"{core} kernels, OPENBLAS_CORETYPE={forced}" if forced else f"{core} kernels"


def preloaded_paths(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The real files behind LD_PRELOAD's entries (threadpoolctl reports real paths)."""
    return tuple(os.path.realpath(p) for p in _preload_entries(environ))


def matmul_blas(infos: Sequence[Mapping], preloaded: Sequence[str] = ()) -> Mapping | None:
    """Of threadpoolctl's info dicts, the BLAS MLX's matmuls run on; None: MLX's own.

    A wheel's private copy, in its auditwheel `NAME.libs/` folder (numpy's
    `numpy.libs/libscipy_openblas64_*.so`, symbols renamed), is one MLX never calls and is
    passed over. Of the rest, a preloaded library wins the symbol lookup, so it comes first.
    """
    found = [info for info in infos if info.get("internal_api") in MARKERS
             and not _wheel_private(str(info.get("filepath") or ""))]
    return next((i for i in found if i.get("filepath") in preloaded), found[0] if found else None)


def _wheel_private(filepath: str) -> bool:
    return os.path.basename(os.path.dirname(filepath)).endswith(".libs")


def blas_in_use(platform: str = sys.platform, environ: Mapping[str, str] = os.environ,
                infos: list | None = None) -> str:
    """What this process's matmuls really run on, from the libraries threadpoolctl finds
    loaded (about 0.6 ms: it walks them all; `infos`: a walk already made)."""
    if platform == "darwin":
        return "accelerate"
    infos = loaded_libraries() if infos is None else infos
    if infos is None:
        return "unknown"
    found = matmul_blas(infos, preloaded_paths(environ))
    return str(found["internal_api"]) if found else "reference"
