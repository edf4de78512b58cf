"""The host service's venv: where it lives and what goes in it (and which optional parts)."""
from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Mapping

from mlx_service.kernels.precision import BF16_MARGIN, cpu_bf16_units

from tasks.core import runner
from tasks.core.say import Say, untagged
from tasks.core.settings import Settings, SettingsError
from tasks.core.venvs import InstallStep, VenvError, ensure_venv, is_current, venv_python

# Optional BLAS libraries the venv can carry (`inv mlx install --blas NAME`); "default" drops
# them again. The venv remembers its choice in EXTRAS_FILE, so later installs keep it.
BLAS_EXTRAS = {"mkl": "requirements-mkl.txt"}
BLAS_CHOICES = ("mkl", "default")
EXTRAS_FILE = ".cortex-extras.json"
# What `pip install mkl` brings in, removed again by --blas default.
MKL_PACKAGES = ("mkl", "intel-openmp", "tbb", "umf", "tcmlib", "intel-cmplr-lib-ur")


def service_install_steps(root: Path, extras: tuple[str, ...] = ()) -> list[InstallStep]:
    service = root / "mlx_service"
    steps = [
        InstallStep(service / "requirements.txt"),
        InstallStep(service / "requirements-nodeps.txt", ("--no-deps",)),
    ]
    return steps + [InstallStep(service / BLAS_EXTRAS[name]) for name in extras]


def saved_extras(venv: Path) -> tuple[str, ...]:
    try:
        names = json.loads((Path(venv) / EXTRAS_FILE).read_text()).get("blas", [])
    except (OSError, ValueError, AttributeError):
        return ()
    return tuple(n for n in names if n in BLAS_EXTRAS)


def wanted_extras(saved: tuple[str, ...], blas: str | None, system: str = sys.platform,
                  machine: str = platform.machine()) -> tuple[str, ...]:
    """The optional parts after this install: the saved ones, plus or minus --blas."""
    if blas is None:
        return saved
    if blas not in BLAS_CHOICES:
        raise VenvError(f"--blas {blas!r} is not one of {', '.join(BLAS_CHOICES)}")
    if blas == "default":
        return ()
    if not (system.startswith("linux") and machine in ("x86_64", "AMD64")):
        raise VenvError(f"--blas {blas}: oneMKL's wheel is for x86-64 Linux, not "
                        f"{system} {machine}")
    return tuple(dict.fromkeys((*saved, blas)))


def install_service_venv(settings: Settings, venv_path: Path | None = None, force: bool = False,
                         say: Say | None = None,
                         blas: str | None = None) -> bool:
    """Create or reuse the service venv; True when pip ran. blas: "mkl" adds oneMKL,
    "default" removes it, None keeps what the venv has."""
    kwargs = {"say": say} if say else {}
    path = Path(venv_path or settings.mlx_venv)
    saved = saved_extras(path)
    extras = wanted_extras(saved, blas)
    dropped = [name for name in saved if name not in extras]
    if dropped and venv_python(path).exists():
        (say or untagged)(f"removing {', '.join(dropped)} from {path}")
        # best effort, as before: what is not installed is not an error here
        runner.run([str(venv_python(path)), "-m", "pip", "uninstall", "-y", "-q",
                    *MKL_PACKAGES], merge_stderr=True)
    ran = ensure_venv(path, service_install_steps(settings.root, extras), force=force, **kwargs)
    if extras != saved:
        (path / EXTRAS_FILE).write_text(json.dumps({"blas": list(extras)}) + "\n")
    return ran




def bf16_hint(extras: tuple[str, ...], cpuinfo: str | None = None,
              measured: Mapping | None = None) -> str | None:
    """What the bf16 matmul path can do on a CPU with bf16 units, from what was measured
    there: `measured` is MLX_BLAS=auto's decision in the venv (blas.choose: its probe times
    the float32 libraries, oneMKL's bf16 Linear where installed and the service's own bf16
    GEMM where the CPU has AVX512_BF16). None on a CPU without units."""
    unit_flags = cpu_bf16_units(cpuinfo)
    units = "/".join(unit_flags)
    if not units:
        return None
    figures = (measured or {}).get("gflops") or {}
    library = (measured or {}).get("library")
    native, bf16 = figures.get("native_bf16"), figures.get("mkl_bf16")
    native = native if isinstance(native, (int, float)) else None
    amx = ("; with AMX, oneMKL's bf16 GEMM (`inv mlx install --blas mkl`, about 1 GB) may "
           "be faster still, and is timed too once installed" if "amx_bf16" in unit_flags
           and "mkl" not in extras else "")
    own = (f"this CPU has {units}; measured here: the service's own bf16 GEMM {native:.0f} "
           f"GFLOPS vs {library}'s float32 {figures.get(library)}: MLX_PRECISION=auto times "
           "the model's own layer both ways at the first start and takes the faster "
           f"(/info precision_reason){amx}") if native else None
    if "mkl" not in extras:
        return own or (f"this CPU has {units}, which oneMKL's bf16 GEMM can use: `inv mlx "
                       "install --blas mkl` adds it (a 221 MB download, about 1 GB on disk) "
                       "and MLX_BLAS / MLX_PRECISION=auto then measure whether it pays here; "
                       "until then fp32")
    if not isinstance(bf16, (int, float)):
        return (f"this CPU has {units}, but oneMKL's bf16 GEMM was not measured "
                f"({(measured or {}).get('reason', 'no BLAS probe')}): the service computes "
                "in fp32 until it is")
    if library == "mkl":
        return (f"this CPU has {units}; measured: {measured['reason'].split('right: ')[-1]}: "
                "MLX_BLAS=auto takes oneMKL, and MLX_PRECISION=auto times the model's own "
                "layer in fp32 and bf16 at the first start (/info precision_reason)")
    if native and native > (figures.get(library) or 0):
        return (f"this CPU has {units}, but measured here oneMKL's bf16 GEMM ({bf16:.0f} "
                f"GFLOPS) did not beat the service's own ({native:.0f} GFLOPS) by "
                f"{BF16_MARGIN}x: MLX_BLAS=auto keeps {library}, and MLX_PRECISION=auto "
                "times the own bf16 GEMM against fp32 (`inv mlx install --blas default` "
                "removes oneMKL)")
    return (f"this CPU has {units}, but measured here oneMKL's bf16 GEMM ({bf16:.0f} GFLOPS) "
            f"did not beat {library}'s float32 ({figures.get(library)} GFLOPS) by "
            f"{BF16_MARGIN}x: the service runs fp32 on {library} (`inv mlx install --blas "
            "default` removes oneMKL; delete the venv's mlx-blas-choice.json to measure again)")


def check_venv_flag(settings: Settings, venv_path: Path | str | None, create: bool = False) -> None:
    """--venv PATH outside the checkout that does not exist is most likely a typo: pip would
    quietly fill it with a new venv of about 500 MB. Refused (SettingsError, exit 2) before
    pip runs, unless the user asked for a new one (--create). A path inside the checkout, or
    one that exists, is used as given."""
    if venv_path is None or create:
        return
    path = Path(venv_path).expanduser().absolute()
    if path.exists() or path.is_relative_to(Path(settings.root).absolute()):
        return
    raise SettingsError(f"--venv {venv_path}: no such folder, and it is outside the checkout; "
                        "check the path, or ask for a new service venv there (about 500 MB) "
                        "with --create (`inv start`: --mlx-flag=--create)")


def service_venv_ready(settings: Settings, venv_path: Path | None = None) -> bool:
    path = Path(venv_path or settings.mlx_venv)
    return is_current(path, service_install_steps(settings.root, saved_extras(path)))


def service_python(settings: Settings, venv_path: Path | None = None) -> Path:
    return venv_python(venv_path or settings.mlx_venv)
