"""The host service's settings and files, checked before anything is installed or started.

The service reads its own settings (mlx_service/config.py) and refuses a bad one with exit 2;
a detached start would only learn that from its log after the spawn. Reading them here with
the service's own parser gives the same sentence, naming the variable the user set, before
anything runs; `inv verify` reports the same problems.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

from mlx_service.config import ConfigError, build_parser, load_config

from tasks.core.settings import Settings, SettingsError
from tasks.host.served_model import dimension_problem

# Set by the tasks themselves for a detached start (the log under CORTEX_LOG_DIR): the user's
# value, if any, is not what the service will get.
SET_BY_THE_TASKS = ("MLX_LOG_FILE",)


def server_flags(server_args: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the flags the service will be given, one sentence per flag it would refuse):
    `inv start --mlx-flag=...` reaches `python -m mlx_service`, whose argparse would exit 2
    with its usage in the log after the launch."""
    given = [str(a) for a in server_args]
    refused = [f"--mlx-flag={a} is not a flag of the host service (`python -m mlx_service "
               "--help` lists them)" for a in given if a.split("=", 1)[0] in ("-h", "--help")]
    if refused:
        return [], refused
    parser = build_parser()
    parser.exit_on_error = False  # an ArgumentError to name, not a usage and SystemExit
    try:
        _, unknown = parser.parse_known_args(given)
    except argparse.ArgumentError as exc:
        return [], [f"--mlx-flag: {exc}"]
    refused = [f"--mlx-flag={a} is not a flag of the host service (`python -m mlx_service "
               "--help` lists them)" for a in unknown]
    return ([], refused) if refused else (given, [])


def service_setting_problem(settings: Settings, server_args: Sequence[str] = (),
                            venv: Path | None = None) -> str | None:
    """Every setting the service (or the tasks that run it) would refuse, in their own words,
    in one line; None when all are good. server_args: `inv start --mlx-flag` values; venv:
    the service venv a start would use (where the bundled model's folder is)."""
    problems = []
    for read in (lambda: settings.mlx_port, lambda: settings.mlx_wait_timeout,
                 lambda: settings.mlx_stop_grace, lambda: settings.mlx_api_key):
        try:
            read()
        except SettingsError as exc:
            problems.append(str(exc))
    argv, refused = server_flags(server_args)
    problems += refused
    environ = {k: v for k, v in settings.env.items() if k not in SET_BY_THE_TASKS}
    try:
        config = load_config(argv, environ)
    except ConfigError as exc:
        named = {p.split("=", 1)[0] for p in problems}  # said once, in the tasks' words
        problems += [p for p in str(exc).split("; ") if p.split("=", 1)[0] not in named]
    else:
        dim_name = "--mlx-flag=--dim" if build_parser().parse_args(argv).dim is not None \
            else "EMBEDDINGS_DIM"
        problems.append(dimension_problem(dim_name, config.dim, config.model,
                                          Path(venv).expanduser() if venv else settings.mlx_venv))
    return "; ".join(p for p in problems if p) or None


def folder_problem(folder: Path, variable: str) -> str | None:
    """Why files cannot be made (and renamed) in `folder`, created when missing as a start
    would create it; None when they can."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return (f"{folder} cannot be created ({exc.strerror or type(exc).__name__}): make it "
                f"a writable folder or set {variable} to another folder")
    if not os.access(folder, os.W_OK | os.X_OK):  # root too: chattr +i, read-only mounts
        return f"{folder} is not writable: make it writable or set {variable} to another folder"
    return None


def writable_problem(path: Path, variable: str) -> str | None:
    """Why the file `path` cannot be created, appended to and rotated beside (its folder must
    let files be made and renamed); None when it can."""
    problem = folder_problem(path.parent, variable)
    if problem or not path.exists():
        return problem and f"{path} cannot be written: {problem}"
    if path.is_dir() or not os.access(path, os.W_OK):
        return (f"{path} cannot be written (it is {'a folder' if path.is_dir() else 'read-only'})"
                f": remove it or set {variable} to another folder")
    return None


def service_files_problem(settings: Settings) -> str | None:
    """The log and the PID file's folder must be writable before a start."""
    return (writable_problem(settings.mlx_log, "CORTEX_LOG_DIR")
            or folder_problem(settings.run_dir, "CORTEX_RUN_DIR"))


def check_service_settings(settings: Settings, server_args: Sequence[str] = (),
                           venv: Path | None = None) -> None:
    """SettingsError with one sentence for the first problem a start would run into."""
    problem = (service_setting_problem(settings, server_args, venv)
               or service_files_problem(settings))
    if problem:
        raise SettingsError(problem)
