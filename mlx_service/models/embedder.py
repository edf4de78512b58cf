"""The model runner: weights + tokenizer + pooling, and the forward pass over a batch.

Tokenizing is thread-safe; `embed` must run on one thread (the inference thread; on the CPU
fast path it hands parts of a batch to lane threads of its own and waits). Which forward
pass runs (`forward`, in /info):

- `cpu-fast`: on a CPU, for every architecture (models/architectures.py `fast`)
  (mlx_service/models/fast_forward.py: matmuls on the chosen BLAS in MLX_PRECISION, numpy
  exp/erf/SiLU, lanes);
- `mlx`: MLX layers (`layers` in /info): mlx-embeddings' for BERT, XLM-R and Qwen3, whose
  token states we pool ourselves (the library's own pooling is fixed per architecture), and
  ours where the library's is wrong or missing (models/architectures.py says which).

After pooling come the folder's sentence-transformers Dense modules, then L2 normalization.

Rows are padded on the right: exact for absolute positions (BERT, XLM-R), and for causal
models (Qwen3) a token never sees what follows it, so a row's last real token is the same
with or without padding; pooling takes each row's last real token wherever it is.
"""
from __future__ import annotations

import logging
import threading

from mlx_service.models.architectures import ARCHITECTURES
from mlx_service.models.batch_plan import split_rows, sub_passes
from mlx_service.models.folder import ModelSpec
from mlx_service.models.pooling import pool

log = logging.getLogger("mlx_service.models")


def truncate_normalize(vectors, dim: int):
    """Rows of vectors -> float32 array of the first `dim` components, re-normalized."""
    import numpy as np  # lazily: importers that only read folders stay free of numpy

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
    def __init__(self, spec: ModelSpec, cpu_fast: bool = True, lanes: int = 0,
                 precision: str = "auto", native_kernels: bool = True, scores: bool = False):
        """cpu_fast: take the fast forward pass where it applies (BERT, XLM-R, ModernBERT,
        Qwen3 on the CPU: models/fast_forward.py); lanes: threads a batch is split over there
        (0: one per core);
        precision: MLX_PRECISION (mlx_service/kernels/precision.py), checked at start;
        native_kernels: the fast path's exp/GELU/SiLU in C where they build
        (mlx_service/kernels/native_math.py), else numpy's; scores: the encoder of a
        scorer (models/scorer.py), whose scores `auto` keeps in fp32."""
        self._scores = scores
        import mlx.core as mx

        from mlx_service.models.loading import load_dense, load_module
        from mlx_service.models.tokenizer_cache import load_tokenizer

        self.spec = spec
        self._mx = mx
        self.device = describe_device(mx)
        self.arch = ARCHITECTURES[spec.architecture]
        self.model, self.dtype = load_module(spec, cpu=self.device == "cpu")
        self.dense = load_dense(spec)  # sentence-transformers' Dense modules, after pooling
        # As transformers builds it, kept from the first start (models/tokenizer_cache.py).
        loaded = load_tokenizer(spec.path)
        self.tokenizer = loaded.slow
        self.pad_id = loaded.pad_id
        self.tokenizer_cached = loaded.cached
        # transformers' wrapper re-applies truncation settings on every call, which makes
        # concurrent calls fail ("Already borrowed"): it needs a lock. A Rust tokenizer of our
        # own only reads its settings, so HTTP threads tokenize in parallel; it tokenizes only
        # as much of a text as truncation keeps (mlx_service/models/truncation.py), and its
        # post-processor adds the special tokens after truncation (Qwen3's appended
        # <|endoftext|>, the token it pools, is never cut).
        self._tok_lock = threading.Lock()
        self._bounded = None
        if loaded.backend is not None:
            from mlx_service.models.truncation import BoundedTokenizer
            # The loader's own object (models/tokenizer_cache.py): no copy needed.
            self._bounded = BoundedTokenizer(loaded.backend, spec.max_seq_length, own=True)
        self.forward = "mlx"  # or cpu-fast below
        self.layers = self.arch.layers
        self.lanes = 1
        self.kernels = "mlx"  # the element-wise kernels: mlx, numpy or native (in /info)
        self._fast = self._lanes = self._blas = None
        if cpu_fast and self.device == "cpu":
            from mlx_service.models import fast_bert as fast
            from mlx_service.models.fast_forward import build
            self._fast = build(self.model, self.arch)
            if self._fast is not None:
                self._blas = fast.BlasThreads()
                self.lanes = lanes or fast.cores()
                self._lanes = fast.Lanes(self.lanes) if self.lanes > 1 else None
                self.forward = "cpu-fast"
                from mlx_service.kernels import native_math
                self._fast.native, self.kernels = native_math.load(native_kernels)
        self.precision, self.precision_reason, self.precision_check = "fp32", "", None
        self._choose_precision(precision)

    def _choose_precision(self, mode: str) -> None:
        """MLX_PRECISION -> the fast path's matmul precision, after the start-up self-check
        (a fixed probe set against numpy's BLAS, mlx_service/kernels/precision.py)."""
        from mlx_service.kernels import gemm, precision
        units = precision.cpu_bf16_units()
        # Nothing to load (or build) where no bf16 can run: fp32 asked for, or no units
        wanted = self._fast is not None and units and mode != "fp32"
        gemms = self._bf16_gemms() if wanted else {}
        from mlx_service.kernels.blas import not_kept_for_bf16, recorded_choice
        not_kept = None if gemms else not_kept_for_bf16(str(recorded_choice().get("reason", "")))
        choice = precision.decide(mode, self._fast is not None, units, next(iter(gemms), ""),
                                  not_kept=not_kept, scores=self._scores)
        if gemms:
            self._fast.bf16_gemm = next(iter(gemms.values()))
        # auto where bf16 could pay, or bf16 with two GEMMs to pick from: time the model's
        # own layer on each
        if choice.measure or (choice.precision == "bf16" and len(gemms) > 1):
            from mlx_service.kernels.precision_probe import measured_timing
            timing = measured_timing(self._fast, self._blas, library=self._blas.library or "",
                                     gemms=gemms)
            self._fast.bf16_gemm = gemms[timing.bf16_gemm]
            choice = precision.decide(mode, True, units, timing.bf16_gemm, timing,
                                      scores=self._scores)
        if self._fast is not None and choice.check:
            probes = self.tokenize(list(precision.PROBE_TEXTS))

            def embed(name: str):
                self._fast.use(name)
                return self.embed(probes)
            choice, self.precision_check = precision.self_check(choice, embed)
            self._fast.use(choice.precision)
            for name in ("reference", "fp32", "bf16", "bf16-emulated"):
                self._fast.forget(name)
        self.precision, self.precision_reason = choice.precision, choice.reason
        (log.warning if "FAILED" in choice.reason or "failed" in choice.reason
         else log.info)("precision %s: %s", choice.precision, choice.reason)

    def _bf16_gemms(self) -> dict:
        """The bf16 GEMMs the fast path can use (gemm.bf16_gemms): oneMKL's where it is
        the preloaded BLAS, the native one where the CPU has AVX512_BF16."""
        from mlx_service.kernels import gemm, native_bf16
        native = getattr(self._fast, "native", None)
        # MLX_NATIVE_KERNELS=0 (no native kernels) leaves this one out too
        own = native_bf16.load()[0] if native is not None else None
        gemms = gemm.bf16_gemms(native, own)
        onemkl = gemms.get(gemm.ONEMKL)
        if onemkl is not None and self._blas is not None:
            onemkl.before_compute = self._blas.apply_here  # its OpenMP count per lane
        return gemms

    @property
    def blas_threads(self) -> int | None:
        """OpenBLAS's own thread count (used by a pass on one lane), when it is loaded."""
        return self._blas.default if self._blas is not None else None

    def describe(self) -> dict:
        """How the model runs, once loaded (the folder's facts are the spec's): the dtype it
        computes in, the forward path and whose layers."""
        return {"dtype": self.dtype, "forward": self.forward, "layers": self.layers,
                "modules": self.spec.modules.describe(),
                "precision": self.precision, "precision_reason": self.precision_reason,
                "kernels": self.kernels}

    # --- tokens -----------------------------------------------------------------------------
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

    def prompt_tokens(self, prompt: str) -> int:
        """Leading tokens a prompt takes, left out of the pool when the model's Pooling says
        include_prompt false (sentence-transformers: the prompt's length less its last
        special token)."""
        if not prompt or self.spec.include_prompt:
            return 0
        return max(0, len(self.tokenize([prompt])[0]) - 1)

    # --- the forward pass -------------------------------------------------------------------
    def embed(self, batch: list[list[int]], skips: list[int] | None = None):
        """Rows of token ids -> (rows, native_dim) L2-normalized float32, in the rows' order.
        `skips`: per row, leading tokens left out of the pool (see prompt_tokens).

        On the CPU fast path a batch of 2+ rows is cut into one part per lane
        (batch_plan.split_rows), each padded to its own longest row and run at the same time,
        OpenBLAS's threads shared out between the lanes; otherwise it is one forward pass.
        """
        return self.in_lanes([len(r) for r in batch], lambda part: self._forward(
            [batch[i] for i in part], None if skips is None else [skips[i] for i in part]))

    def in_lanes(self, lengths: list[int], run):
        """run(indices) -> (len(indices), k) float32 for rows of these lengths, cut into one
        part per lane (batch_plan.split_rows) and run at the same time, OpenBLAS's threads
        shared out between the lanes; one part when there are no lanes. In the rows' order.
        On the CPU fast path a big pass runs as sub-passes of at most CPU_LANE_TOKENS padded
        tokens per lane (batch_plan.sub_passes: faster, measured there).
        (The reranker's scorer runs its batches through this too.)"""
        if self.forward == "cpu-fast":
            passes = sub_passes(lengths, self.lanes)
            if len(passes) > 1:
                import numpy as np
                out = None
                for rows in passes:
                    vectors = self._split_over_lanes(
                        [lengths[i] for i in rows], lambda part: run([rows[i] for i in part]))
                    if out is None:
                        out = np.empty((len(lengths), vectors.shape[1]), dtype=np.float32)
                    out[rows] = vectors
                return out
        return self._split_over_lanes(lengths, run)

    def _split_over_lanes(self, lengths: list[int], run):
        if self._lanes is None or len(lengths) < 2:
            return run(list(range(len(lengths))))
        import numpy as np

        parts = split_rows(lengths, self._lanes.count)
        if len(parts) < 2:
            return run(list(range(len(lengths))))
        # OpenBLAS's threads shared out: on 2 cores, one per lane (no oversubscription).
        self._blas.set(max(1, (self._blas.default or 1) // len(parts)))
        try:
            results = self._lanes.map(run, parts)
        finally:
            self._blas.restore()
        out = np.empty((len(lengths), results[0].shape[1]), dtype=np.float32)
        for part, vectors in zip(parts, results):
            out[part] = vectors
        return out

    def hidden_states(self, ids, mask, token_types=None):
        """(rows, tokens, hidden) last hidden states for right-padded numpy ids and mask;
        token_types: BERT's segment ids (a reranker's pairs), None for all zeros."""
        mx = self._mx
        if self._fast is not None:
            if token_types is not None:
                return self._fast(ids, mask, token_types)
            return self._fast(ids, mask)
        extra = {} if token_types is None else {"token_type_ids": mx.array(token_types)}
        out = self.model(mx.array(ids), attention_mask=mx.array(mask), **extra)
        # The library's models return an output object; ours return the states themselves.
        return getattr(out, "last_hidden_state", out)

    def _forward(self, batch: list[list[int]], skips: list[int] | None = None):
        """One forward pass over rows of token ids, on the calling thread's MLX stream."""
        import numpy as np

        mx = self._mx
        width = max(len(ids) for ids in batch)
        ids = np.full((len(batch), width), self.pad_id, dtype=np.int32)
        mask = np.zeros((len(batch), width), dtype=np.int32)
        for row, seq in enumerate(batch):  # right padding: real tokens first
            ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1
        hidden = self.hidden_states(ids, mask).astype(mx.float32)
        skip = mx.array(np.asarray(skips, dtype=np.int32)) if skips and any(skips) else None
        pooled = pool(mx, self.spec.pooling, hidden, mx.array(mask), skip)
        for weight, bias, activation in self.dense:
            pooled = pooled @ weight.T
            pooled = activation(pooled + bias if bias is not None else pooled)
        # Unit vectors whether or not the folder ends in Normalize (models/st_modules.py).
        pooled = pooled / mx.maximum(mx.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
        mx.eval(pooled)
        return np.array(pooled, dtype=np.float32)
