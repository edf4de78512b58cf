"""sentence-transformers' modules after the transformer, as a folder's modules.json lists
them: Pooling (models/pooling.py), then any number of Dense (a linear layer on the pooled
vector, with or without bias, then an activation), then Normalize or not. Read without MLX
(configs and safetensors headers), so a folder whose modules cannot run is refused before
the service listens, in one sentence that names the module.

The service's vectors are always L2-normalized (OpenAI's and TEI's endpoints promise unit
vectors, and EMBEDDINGS_DIM re-normalizes what it truncates): a folder without Normalize
gives the direction of sentence-transformers' vector, cosine 1 to it; `normalize` says
which of the two the folder itself does (in /info).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mlx_service.models.activations import TORCH_ACTS, torch_activation
from mlx_service.models.weights import WeightsError, header

TRANSFORMER, POOLING, DENSE, NORMALIZE = "Transformer", "Pooling", "Dense", "Normalize"
SERVED = (TRANSFORMER, POOLING, DENSE, NORMALIZE)
DENSE_WEIGHTS = "model.safetensors"


class ModulesError(ValueError):
    """The folder's modules cannot be run; the message says why, naming the module."""


@dataclass(frozen=True)
class DenseLayer:
    path: str            # its folder, as modules.json names it (e.g. "2_Dense")
    in_features: int
    out_features: int
    bias: bool
    activation: str      # models/activations.py's name
    weights: Path        # its model.safetensors

    def describe(self) -> str:
        bias = "" if self.bias else ", no bias"
        return f"Dense {self.in_features}->{self.out_features} {self.activation}{bias}"


@dataclass(frozen=True)
class Modules:
    dense: tuple[DenseLayer, ...] = ()
    normalize: bool = True   # the folder's own Normalize module (no modules.json: assumed)

    def out_dim(self, pooled: int) -> int:
        return self.dense[-1].out_features if self.dense else pooled

    def describe(self) -> list[str]:
        return [d.describe() for d in self.dense] + ([NORMALIZE] if self.normalize else [])


def module_kind(entry) -> str:
    """The class name of a modules.json entry (sentence_transformers.models.Dense -> Dense)."""
    kind = str(entry.get("type", "")) if isinstance(entry, dict) else ""
    return kind.rsplit(".", 1)[-1]


def read_modules(folder: Path, pooled_dim: int) -> Modules:
    """The folder's Dense and Normalize modules, checked against the pooled dimension."""
    entries = _json(folder / "modules.json", folder)
    if entries is None:
        return Modules()
    if not isinstance(entries, list):
        raise ModulesError("modules.json is not a list of modules")
    dense: list[DenseLayer] = []
    normalize = False
    dim = pooled_dim
    seen: list[str] = []
    for entry in entries:
        kind = module_kind(entry)
        if kind not in SERVED:
            name = (entry.get("type") if isinstance(entry, dict) else None) or repr(entry)
            raise ModulesError(f"modules.json has a {kind or name} module ({name}), which this "
                               f"service does not run (it runs {', '.join(SERVED)})")
        if kind == DENSE:
            if POOLING not in seen:
                raise ModulesError(f"the Dense module {entry.get('path')!r} comes before "
                                   "Pooling; this service runs Dense on the pooled vector only")
            layer = read_dense(folder, str(entry.get("path") or ""), dim)
            dense.append(layer)
            dim = layer.out_features
        elif kind == NORMALIZE:
            normalize = True
        if kind in (POOLING, DENSE) and NORMALIZE in seen:
            raise ModulesError(f"a {kind} module follows Normalize; this service runs "
                               "Normalize last")
        seen.append(kind)
    return Modules(tuple(dense), normalize)


def read_dense(folder: Path, path: str, dim: int) -> DenseLayer:
    where = folder / path
    cfg = _json(where / "config.json", folder)
    if not isinstance(cfg, dict):
        raise ModulesError(f"the Dense module {path!r} has no config.json")
    fin, fout = cfg.get("in_features"), cfg.get("out_features")
    if not (isinstance(fin, int) and isinstance(fout, int) and fin > 0 and fout > 0):
        raise ModulesError(f"{path}/config.json needs positive integer in_features and "
                           "out_features")
    if fin != dim:
        raise ModulesError(f"the Dense module {path!r} takes {fin} values but gets {dim} "
                           "(the vector before it)")
    raw = cfg.get("activation_function", "torch.nn.modules.activation.Tanh")
    activation = torch_activation(raw)
    if activation is None:
        raise ModulesError(f"the Dense module {path!r} uses the activation {raw!r}, which this "
                           f"service does not run (it runs {', '.join(TORCH_ACTS)})")
    bias = cfg.get("bias", True) is not False
    weights = where / DENSE_WEIGHTS
    if not weights.is_file():
        other = " (only pytorch_model.bin, which needs torch)" \
            if (where / "pytorch_model.bin").exists() else ""
        raise ModulesError(f"the Dense module {path!r} has no {DENSE_WEIGHTS}{other}")
    try:
        tensors = header(weights)
    except WeightsError as exc:
        raise ModulesError(f"the Dense module {path!r}: {exc}") from None
    want = {"linear.weight": [fout, fin]}
    if bias:
        want["linear.bias"] = [fout]
    for name, shape in want.items():
        got = (tensors.get(name) or {}).get("shape")
        if got != shape:
            found = f"has shape {got}" if got is not None else "is missing"
            raise ModulesError(f"the Dense module {path!r}: {name} {found}, its config says "
                               f"{shape}")
    return DenseLayer(path, fin, fout, bias, activation, weights)


def _json(path: Path, folder: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ModulesError(f"cannot read {path.relative_to(folder)}: {exc}") from None
