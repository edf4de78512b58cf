"""The fast path for MLX on a CPU (Linux): what made MiniLM's forward pass ~3x faster there.

Measured on a 2-core x86 machine with OpenBLAS preloaded (8 texts of ~250 tokens: about
1100 ms -> 300 ms; `inv bench` has the figures):

1. **exp and erf in numpy.** MLX's CPU kernels for transcendental functions are scalar and
   single-threaded: the erf in GELU and the exp in softmax took about two thirds of the
   forward pass. numpy's float32 exp is ~10x faster than MLX's here; erf is built from it
   (Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7): the exact (erf) GELU, cosine to the
   reference >= 0.99999. Where they build, mlx_service/kernels/native_math.py's C loops (libmvec's
   SIMD expf/erff) replace both, 3-4x faster again. In place in the buffers MLX has just
   produced (see `writable`), and softmax's division is done after multiplying by V, on
   T/head_dim times fewer numbers. Matmuls stay in MLX, on its BLAS.
2. **Fused Q/K/V**: one matmul, with the 1/sqrt(head_dim) scale folded into the weights.
3. **Both cores** (models.embedder.Embedder, batch_plan.split_rows): numpy and MLX's element-wise kernels
   use one core each, so a batch of 2+ rows is cut into one part per core, each run by a
   thread with an MLX stream of its own, OpenBLAS's threads shared out between the parts.

BERT and XLM-R take CpuBertForward (mlx_service/models/fast_forward.py picks; Qwen3 and
ModernBERT have their own modules beside it, sharing these kernels); the weight matmuls go
through mlx_service/kernels/gemm.py in the precision MLX_PRECISION settles on. Quantized models, and
any GPU, run their MLX layers unchanged (mlx_service/models/embedder.py). MLX_CPU_FAST=0
turns it off.
"""
from __future__ import annotations

import math
import os
import queue
import threading
from typing import Callable, Mapping, Sequence

import numpy as np

from mlx_service.kernels import gemm
from mlx_service.kernels.blas import matmul_blas, preloaded_paths

# erfc(z) ~= t * poly(t) * exp(-z^2), t = 1 / (1 + P z), z >= 0  (A&S 7.1.26)
_P = 0.3275911
_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
_SQRT1_2 = 0.7071067811865476
GELU_CHUNK = 65536    # float32 elements per numpy pass: 256 KiB, stays in L2 with temporaries
MASK_BIAS = -10000.0  # what BertModel adds to the scores of padding positions


# --- element-wise kernels (numpy) ---------------------------------------------------------------
def _gelu_chunk(x: np.ndarray, out: np.ndarray, ax: np.ndarray, t: np.ndarray,
                r: np.ndarray) -> None:
    """out = x * Phi(x) = max(x, 0) - |x| * Phi(-|x|), Phi(-|x|) = erfc(|x|/sqrt2) / 2.
    `out` may be `x` itself: x is last read before out is first written."""
    np.abs(x, out=ax)
    np.multiply(ax, np.float32(_P * _SQRT1_2), out=t)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    np.multiply(t, np.float32(_A[4] * 0.5), out=r)
    r += np.float32(_A[3] * 0.5)
    for c in (_A[2], _A[1], _A[0]):
        r *= t
        r += np.float32(c * 0.5)
    r *= t
    np.multiply(x, x, out=t)
    t *= np.float32(-0.5)
    np.exp(t, out=t)
    r *= t
    r *= ax
    np.maximum(x, np.float32(0.0), out=out)
    out -= r


def gelu_erf_(x: np.ndarray, chunk: int = GELU_CHUNK) -> np.ndarray:
    """GELU (erf form), in place, of a C-contiguous float32 array; returns it."""
    if x.dtype != np.float32 or not x.flags.c_contiguous or not x.flags.writeable:
        raise ValueError("gelu_erf_ needs a writable C-contiguous float32 array")
    flat = x.reshape(-1)
    n = flat.size
    size = max(1, min(chunk, n))
    ax, t, r = (np.empty(size, np.float32) for _ in range(3))
    for i in range(0, n, chunk):
        k = min(chunk, n - i)
        part = flat[i:i + k]
        _gelu_chunk(part, part, ax[:k], t[:k], r[:k])
    return x


def exp_rows_(scores: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """In place over (B, H, T, T) scores: exp(scores + bias - rowmax), bias (B, 1, 1, T) or None.

    Returns the row sums (B, H, T, 1): softmax = result / sums, which the caller applies
    after multiplying by V. One batch row at a time, so that row's scores stay in cache.
    """
    sums = np.empty(scores.shape[:-1] + (1,), np.float32)
    for b in range(scores.shape[0]):
        s = scores[b]
        if bias is not None:
            s += bias[b]
        s -= s.max(axis=-1, keepdims=True)
        np.exp(s, out=s)
        np.sum(s, axis=-1, keepdims=True, out=sums[b])
    return sums


def right_padded_lengths(mask: np.ndarray) -> np.ndarray | None:
    """Each row's real length when every row's mask is ones then zeros, else None."""
    lengths = mask.sum(axis=1)
    if not np.array_equal(mask != 0, np.arange(mask.shape[1])[None, :] < lengths[:, None]):
        return None
    return lengths.astype(np.int64)


def exp_real_rows_(scores: np.ndarray, lengths: np.ndarray,
                   hidden: Callable[[int], np.ndarray | None] | None = None,
                   native=None) -> np.ndarray:
    """exp_rows_ for right-padded rows, in place over (B, H, T, T) scores: exp(scores - row
    max) on each row's real keys and 0 on its padding keys (what BertModel's -10000 bias
    gives after exp); the query rows of padding put all their weight on key 0 (their output
    is never pooled, only kept finite). Returns the row sums (B, H, T, 1).

    `hidden(length)`: the (length, length) bool matrix of the real pairs a query may not see
    either (Qwen3's future keys, ModernBERT's beyond its window), None for none. `native`:
    mlx_service/kernels/native_math.py's kernels (C-contiguous scores), else numpy's.

    No bias pass, and only the real part of each row is touched: on a batch padded to twice
    its rows' length, a quarter of exp_rows_'s work.
    """
    width = scores.shape[-1]
    sums = np.ones(scores.shape[:-1] + (1,), np.float32)
    for b, length in enumerate(lengths):
        s = scores[b]
        length = max(int(length), 1)
        if length < width:
            s[:, length:, :] = 0.0
            s[:, length:, 0] = 1.0
            s[:, :length, length:] = 0.0
        real = s[:, :length, :length]
        masked = hidden(length) if hidden is not None else None
        if masked is not None:
            real[:, masked] = -np.inf
        if native is not None:
            native.exp_rows(s, length, sums[b])
            continue
        np.subtract(real, real.max(axis=-1, keepdims=True), out=real)
        np.exp(real, out=real)
        np.sum(real, axis=-1, keepdims=True, out=sums[b, :, :length])
    return sums


def gelu_real_rows_(inner: np.ndarray, lengths: np.ndarray | None, native=None) -> None:
    """gelu_erf_ (or the native kernel's) in place over (B, T, F) C-contiguous activations,
    on each row's real positions only (padding positions are never attended to nor pooled)."""
    gelu = native.gelu if native is not None else gelu_erf_
    if lengths is None or int(lengths.min()) >= inner.shape[1]:
        gelu(inner)
        return
    for b, length in enumerate(lengths):
        gelu(inner[b, :max(int(length), 1)])


def attend(mx, q, k, v, exp_weights: Callable[[np.ndarray], np.ndarray], groups: int = 1):
    """The attention step every fast path shares: softmax(q k^T) v with the division done
    after the product (on T/head_dim times fewer numbers).

    q: (B, H, T, D); k, v: (B, H / groups, T, D). Grouped-query attention stacks the `groups`
    query heads that share a key/value head along the rows, so K and V are never repeated.
    `exp_weights(scores)`: the model's own softmax numerator, in place over the (B, H, T, T)
    float32 scores (its biases, masks and window, then exp), returning the row sums
    (B, H, T, 1).
    """
    b, heads, t, d = q.shape
    scores = q.reshape(b, heads // groups, groups * t, d) @ k.transpose(0, 1, 3, 2)
    mx.eval(scores)
    weights = writable(scores)
    sums = exp_weights(weights.reshape(b, heads, t, t))
    if not np.shares_memory(weights, np.asarray(scores)):
        scores = mx.array(weights)
    return (scores @ v).reshape(b, heads, t, d) * mx.array(np.reciprocal(sums))


def writable(array) -> np.ndarray:
    """numpy's view of an evaluated MLX array's own buffer, to be overwritten in place.

    Only used on arrays this module has just computed and holds the one reference to (a
    matmul's fresh output, no view of another array), so nothing else can see the change;
    anything else (strided, read-only) gets a copy, which the caller turns back into MLX.
    """
    view = np.asarray(array)
    if view.dtype == np.float32 and view.flags.c_contiguous and view.flags.writeable:
        return view
    return np.array(view, dtype=np.float32, order="C")


# --- the forward pass -----------------------------------------------------------------------------
def _exact_gelu_layer(layer) -> bool:
    """The layer's intermediate step is dense then the exact (erf) GELU: BERT's configured
    activation, or XLM-R's module, which calls nn.gelu (erf) itself."""
    import mlx.nn as nn
    act = getattr(layer.intermediate, "intermediate_act_fn", None)
    if act is not None:
        return isinstance(act, nn.GELU) and getattr(act, "_approx", None) == "none"
    try:
        from mlx_embeddings.models.xlm_roberta import XLMRobertaIntermediate
    except ImportError:
        return False
    return type(layer.intermediate) is XLMRobertaIntermediate


def supports(model) -> bool:
    """A BertModel-shaped MLX module (mlx-embeddings' bert or xlm_roberta: the same layers;
    XLM-R's embeddings count positions from padding_idx + 1 themselves) with exact GELU."""
    try:
        import mlx.nn as nn
        layers = list(model.encoder.layer)
        model.embeddings.word_embeddings  # noqa: B018 (attribute probes)
        for layer in layers:
            att = layer.attention.self
            for linear in (att.query, att.key, att.value, layer.attention.output.dense,
                           layer.intermediate.dense, layer.output.dense):
                if not isinstance(linear, nn.Linear) or "bias" not in linear:
                    return False
            if not (isinstance(att.num_attention_heads, int)
                    and isinstance(att.attention_head_size, int)):
                return False
            layer.attention.output.LayerNorm, layer.output.LayerNorm  # noqa: B018
            if not _exact_gelu_layer(layer):
                return False
        return bool(layers)
    except (AttributeError, TypeError):
        return False


class CpuBertForward(gemm.LayerKernels):
    """`self(ids, mask) -> last hidden state (mx.array)` for a BertModel-shaped MLX model:
    its own weights, the same result to float32 rounding (and erf's 1.5e-7)."""

    def __init__(self, model, precision: str = "fp32", gemm=None):
        self.model = model
        super().__init__(model.encoder.layer, precision, gemm)

    def _layer_kernels(self, layer, precision: str):
        att = layer.attention.self
        heads, head_dim = att.num_attention_heads, att.attention_head_size
        qkv = gemm.fused([(att.query.weight, att.query.bias), (att.key.weight, att.key.bias),
                          (att.value.weight, att.value.bias)], precision, self.bf16_gemm,
                         scales=[1.0 / math.sqrt(head_dim), 1.0, 1.0])
        dense = [gemm.Linear(d.weight, d.bias, precision, self.bf16_gemm)
                 for d in (layer.attention.output.dense, layer.intermediate.dense,
                           layer.output.dense)]
        return (layer, heads, head_dim, qkv, *dense)

    def _attend(self, q, k, v, lengths, bias):
        """Right-padded rows (what Embedder sends) take exp_real_rows_, other masks
        exp_rows_ over everything."""
        return attend(self._mx, q, k, v,
                      lambda weights: exp_rows_(weights, bias) if lengths is None
                      else exp_real_rows_(weights, lengths, native=self.native))

    def __call__(self, ids: np.ndarray, mask: np.ndarray, token_types: np.ndarray | None = None):
        """token_types: BERT's segment ids (a cross-encoder's pairs), None for all zeros."""
        mx = self._mx
        x = (self.model.embeddings(mx.array(ids)) if token_types is None
             else self.model.embeddings(mx.array(ids), mx.array(token_types)))
        bias = None
        if not mask.all():
            bias = ((1.0 - mask.astype(np.float32)) * np.float32(MASK_BIAS))[:, None, None, :]
        lengths = right_padded_lengths(mask)
        for layer, *kernels in self.layer_kernels:
            x = encoder_layer(mx, x, kernels,
                              (layer.attention.output.LayerNorm, layer.output.LayerNorm),
                              lambda q, k, v: self._attend(q, k, v, lengths, bias),
                              lengths, self.native)
        return x


def encoder_layer(mx, x, kernels, norms, attend_heads, lengths, native):
    """One post-norm BERT-shaped layer (BERT's, MPNet's): fused Q/K/V, `attend_heads(q, k, v)`
    per head, the output projection and its LayerNorm, the exact-GELU feed-forward and its.

    kernels: (heads, head_dim, qkv, out, inner, down); norms: (after attention, after the
    feed-forward)."""
    heads, head_dim, qkv_k, out_k, inner_k, down_k = kernels
    attention_norm, output_norm = norms
    batch, width = x.shape[0], x.shape[1]
    hidden = heads * head_dim
    qkv = qkv_k(x.reshape(batch * width, hidden))
    qkv = mx.contiguous(qkv.reshape(batch, width, 3, heads, head_dim).transpose(2, 0, 3, 1, 4))
    ctx = attend_heads(qkv[0], qkv[1], qkv[2])
    ctx = ctx.transpose(0, 2, 1, 3).reshape(batch * width, hidden)
    attended = attention_norm(out_k(ctx).reshape(batch, width, hidden) + x)
    inner = inner_k(attended.reshape(batch * width, hidden))
    mx.eval(inner)
    activated = writable(inner)
    gelu_real_rows_(activated.reshape(batch, width, -1), lengths, native)
    if not np.shares_memory(activated, np.asarray(inner)):
        inner = mx.array(activated)
    return output_norm(down_k(inner).reshape(batch, width, hidden) + attended)


# --- both cores -----------------------------------------------------------------------------------
class BlasThreads:
    """The thread count of the BLAS MLX's matmuls run on, through threadpoolctl: OpenBLAS or
    oneMKL, the library blas.matmul_blas picks by file path (MLX's own has none: a no-op).
    numpy's bundled OpenBLAS is another library and keeps its own count.

    The lanes need a process-wide count (each MLX stream runs its ops on a native thread of
    its own, which no per-thread setting reaches): while a batch is split over lanes every
    lane's matmuls run on one thread, between batches on all of them. OpenBLAS's pthreads
    build has only a process-wide count, which threadpoolctl's set_num_threads sets. For
    oneMKL threadpoolctl sets a per-thread one (MKL_Set_Num_Threads_Local), so the
    process-wide MKL_Set_Num_Threads is called through the controller's own handle instead.

    oneMKL's bf16 GEMM heeds neither: it runs on OpenMP's count, which is per calling thread
    (measured on a Zen 5: with MKL_Set_Num_Threads(1) each call still took both cores, so two
    lanes ran four threads on two cores). `apply_here` sets it in the calling thread; the bf16
    GEMM calls it before each product (gemm.Bf16Gemm.before_compute).
    """

    PROCESS_WIDE = {"mkl": "MKL_Set_Num_Threads"}

    def __init__(self, controller=None, environ: Mapping[str, str] = os.environ):
        """controller: a threadpoolctl ThreadpoolController, built here when None (once per
        Embedder: it walks every loaded library, about 2 ms)."""
        self._lib, self._set, self.default = None, None, None
        self._openmp: list = []    # each OpenMP runtime's omp_set_num_threads
        self.share: int | None = None  # a lane's count while a batch is split
        if controller is None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:
                return
            controller = ThreadpoolController()
        chosen = matmul_blas(controller.info(), preloaded_paths(environ))
        if chosen is None:
            return
        self._lib = controller.select(filepath=chosen["filepath"]).lib_controllers[0]
        name = self.PROCESS_WIDE.get(chosen["internal_api"])
        self._set = getattr(self._lib.dynlib, name) if name else self._lib.set_num_threads
        self.default = int(self._lib.num_threads)
        if chosen["internal_api"] == "mkl":
            # Reading its count made oneMKL load its OpenMP runtime: a fresh look finds it.
            self._openmp = [lib.dynlib.omp_set_num_threads
                            for lib in type(controller)().select(user_api="openmp")
                            .lib_controllers]

    @property
    def library(self) -> str | None:
        """The file whose count is set; None when MLX runs on its own BLAS."""
        return self._lib.filepath if self._lib is not None else None

    def set(self, n: int) -> None:
        self.share = int(n)
        if self._set is not None:
            self._set(int(n))

    def apply_here(self) -> None:
        """OpenMP's count, in the calling thread: the lane's share while a batch is split,
        else the library's default."""
        n = self.share or self.default
        for set_threads in self._openmp:
            set_threads(n)

    def restore(self) -> None:
        self.share = None
        if self._set is not None and self.default:
            self._set(self.default)
            # threadpoolctl lets one live thread at a time set OpenBLAS's count: hand it
            # back, as its own limit() does on exit, so that any thread may set it next.
            release = getattr(type(self._lib), "clear_controlling_thread", None)
            if release is not None:
                release()


def cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class Lanes:
    """Threads with an MLX CPU stream each; `map(fn, parts)` runs fn over the parts at once.

    The caller's thread runs parts[0] itself, helpers the rest. MLX streams belong to the
    thread that made them, so each helper makes its own and keeps it for its lifetime.
    """

    def __init__(self, count: int):
        self.count = max(1, count)
        self._helpers: list[queue.Queue] = []
        for i in range(self.count - 1):
            jobs: queue.Queue = queue.Queue()
            threading.Thread(target=self._helper, args=(jobs,), name=f"mlx-lane-{i + 1}",
                             daemon=True).start()
            self._helpers.append(jobs)

    @staticmethod
    def _helper(jobs: queue.Queue) -> None:
        import mlx.core as mx
        with mx.stream(mx.new_stream(mx.cpu)):
            while True:
                fn, arg, box, done = jobs.get()
                try:
                    box.append((True, fn(arg)))
                except BaseException as exc:  # handed back to the caller and raised there
                    box.append((False, exc))
                done.set()

    def map(self, fn: Callable, parts: Sequence) -> list:
        if not parts or len(parts) > self.count:
            raise ValueError(f"{len(parts)} parts for {self.count} lanes")
        pending = []
        for jobs, part in zip(self._helpers, parts[1:]):
            box: list = []
            done = threading.Event()
            jobs.put((fn, part, box, done))
            pending.append((box, done))
        error = None
        try:
            results = [fn(parts[0])]
        except BaseException as exc:
            results, error = [None], exc
        for box, done in pending:  # always wait: no helper may still run once we return
            done.wait()
            ok, value = box[0]
            if not ok and error is None:
                error = value
            results.append(value if ok else None)
        if error is not None:
            raise error
        return results
