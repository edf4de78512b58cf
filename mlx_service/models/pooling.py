"""Pooling: which modes a model uses (from its sentence-transformers files, else its
architecture's own), and the pooling itself, as sentence-transformers' models/Pooling.py
does it (modes concatenated in its order; padding never counts).

Reading is pure Python; `pool` takes MLX arrays (mlx is imported by the caller).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# sentence-transformers' Pooling concatenates its modes in this order.
POOLING_KEYS = (
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_max_tokens", "max"),
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
    ("pooling_mode_weightedmean_tokens", "weightedmean"),
    ("pooling_mode_lasttoken", "lasttoken"),
)
SUPPORTED_POOLING = tuple(mode for _, mode in POOLING_KEYS)
# Newer files name one mode in "pooling_mode"; these are its spellings.
MODE_NAMES = {"cls": "cls", "cls_token": "cls", "max": "max", "max_tokens": "max",
              "mean": "mean", "mean_tokens": "mean", "mean_sqrt_len": "mean_sqrt_len",
              "mean_sqrt_len_tokens": "mean_sqrt_len", "weightedmean": "weightedmean",
              "weightedmean_tokens": "weightedmean", "lasttoken": "lasttoken",
              "last_token": "lasttoken"}


class PoolingError(ValueError):
    """The pooling files cannot be served; the message says why."""


@dataclass(frozen=True)
class Pooling:
    modes: tuple[str, ...]
    source: str              # where the modes came from (a file, or the architecture)
    include_prompt: bool = True  # False: the prompt's tokens are left out of the pool


def pooling_folder(folder: Path) -> Path | None:
    """The Pooling module's folder as modules.json names it (1_Pooling by default)."""
    modules = _json(folder / "modules.json")
    if isinstance(modules, list):
        for module in modules:
            if isinstance(module, dict) and str(module.get("type", "")).endswith("Pooling"):
                return folder / str(module.get("path") or "1_Pooling")
    path = folder / "1_Pooling"
    return path if path.is_dir() else None


def read_pooling(folder: Path, own_mode: str = "mean", own_why: str = "") -> Pooling:
    """The folder's pooling; without sentence-transformers Pooling files, `own_mode` (the
    architecture's), whose reason `own_why` is said in the source."""
    sub = pooling_folder(folder)
    cfg = _json(sub / "config.json") if sub is not None else None
    if cfg is None:
        why = f": {own_why}" if own_why else ""
        return Pooling((own_mode,), f"no Pooling config; the architecture's own{why}")
    if not isinstance(cfg, dict):
        raise PoolingError(f"{_rel(sub, folder)}/config.json is not a JSON object")
    if cfg.get("pooling_mode"):
        raw = str(cfg["pooling_mode"]).strip().lower()
        if raw not in MODE_NAMES:
            raise PoolingError(f"pooling mode {raw!r} is not supported "
                               f"(supported: {', '.join(SUPPORTED_POOLING)})")
        modes: tuple[str, ...] = (MODE_NAMES[raw],)
    else:
        modes = tuple(mode for key, mode in POOLING_KEYS if cfg.get(key))
    if not modes:
        raise PoolingError(f"{_rel(sub, folder)}/config.json enables no pooling mode")
    return Pooling(modes, f"{_rel(sub, folder)}/config.json",
                   include_prompt=cfg.get("include_prompt", True) is not False)


def pool(mx, modes: tuple[str, ...], hidden, mask, skip=None):
    """(rows, tokens, dim) hidden states, (rows, tokens) 0/1 mask of real tokens, right
    padded -> (rows, dim * len(modes)). `skip`: per row, leading tokens left out of the pool
    (a prompt, when the model pools without it), as sentence-transformers masks them."""
    if skip is not None:
        positions = mx.arange(mask.shape[1])[None, :]
        mask = mask * (positions >= skip[:, None]).astype(mask.dtype)
    m = mask[..., None].astype(mx.float32)
    out = []
    for mode in modes:
        if mode == "cls":
            out.append(hidden[:, 0, :])
        elif mode == "lasttoken":
            # The last real token of each row (right padding: its length - 1).
            last = mx.maximum(_last_index(mx, mask), 0)
            out.append(mx.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0, :])
        elif mode == "max":
            # Padding must never win the max: push it far below any real activation.
            out.append(mx.max(mx.where(m > 0, hidden, -1e9), axis=1))
        elif mode == "weightedmean":
            weights = m * mx.arange(1, mask.shape[1] + 1, dtype=mx.float32)[None, :, None]
            out.append(mx.sum(hidden * weights, axis=1)
                       / mx.maximum(mx.sum(weights, axis=1), 1e-9))
        else:
            total = mx.sum(hidden * m, axis=1)
            count = mx.maximum(mx.sum(m, axis=1), 1e-9)
            out.append(total / mx.sqrt(count) if mode == "mean_sqrt_len" else total / count)
    return mx.concatenate(out, axis=-1) if len(out) > 1 else out[0]


def _last_index(mx, mask):
    """The index of each row's last 1 (sentence-transformers flips and takes the max)."""
    width = mask.shape[1]
    positions = mx.arange(width)[None, :]
    return mx.max(mx.where(mask > 0, positions, -1), axis=1).astype(mx.int32)


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise PoolingError(f"cannot read {path.name}: {exc}") from None


def _rel(sub: Path, folder: Path) -> str:
    try:
        return str(sub.relative_to(folder))
    except ValueError:
        return str(sub)
