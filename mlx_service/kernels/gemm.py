"""The matmuls of a fast forward pass (`x @ W.T + b`), in the precision the service runs.

A `Linear` holds one layer's weight, converted once at load, and computes on MLX arrays:

- `fp32`: MLX's addmm, i.e. cblas_sgemm of the preloaded BLAS (mlx_service/kernels/blas.py);
- `bf16` on a bf16 GEMM: weight rounded to bf16 (uint16, the top half of a float32) and
  packed once, activations rounded to bf16 per matmul (to nearest even, one native pass),
  products accumulated in float32. Two GEMMs can drive the units: oneMKL's
  `cblas_gemm_bf16bf16f32` (AMX-BF16 / AVX512_BF16; Bf16Gemm here) and our own on
  AVX512_BF16 (native_bf16.py); `bf16_gemms` lists those this process has;
- `bf16-emulated`: the same numbers without the library: operands rounded to bf16 and
  multiplied by the float32 GEMM. A product of two bf16 values is exact in float32, so this
  gives what the bf16 GEMM gives (up to summation order), at float32's speed less the
  rounding: how the bf16 path's accuracy is checked on a CPU that lacks the units;
- `reference`: numpy's own bundled BLAS, a different library from the preloaded one: the
  start-up self-check (mlx_service/kernels/precision.py) compares the serving path against it.
"""
from __future__ import annotations

import ctypes

import numpy as np

MKL_BF16_SYMBOL = "cblas_gemm_bf16bf16f32"
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112  # CBLAS enums
_B_MATRIX, _PACKED = 162, 151                    # CblasBMatrix, CblasPacked


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 as uint16 (round to nearest even), numpy-only."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
            >> np.uint32(16)).astype(np.uint16)


ONEMKL = "oneMKL"  # the name precision's reasons give Bf16Gemm


class Bf16Gemm:
    """oneMKL's bf16 GEMM as the fast path calls it: each weight rounded and packed once
    (`cblas_gemm_bf16bf16f32_pack`, where the library has it: no per-call reformatting of
    the weight, which a few-token request would pay in full), activations rounded in one
    native pass (native_math's round_bf16; numpy's five passes where it is not built)
    straight from MLX's buffer, the bias preloaded into the output (beta = 1)."""
    name = ONEMKL

    def __init__(self, lib, native=None):
        c_int, c_float, ptr = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
        gemm_args = [c_int] * 6 + [c_float, ptr, c_int, ptr, c_int, c_float, ptr, c_int]
        self._gemm = getattr(lib, MKL_BF16_SYMBOL)
        self._gemm.restype, self._gemm.argtypes = None, gemm_args
        self.native = native
        # Called in the calling thread before each product: sets the OpenMP thread count
        # oneMKL's bf16 GEMM runs on (fast_bert.BlasThreads.apply_here). None: its default.
        self.before_compute = None
        try:
            self._size = getattr(lib, MKL_BF16_SYMBOL + "_pack_get_size")
            self._pack = getattr(lib, MKL_BF16_SYMBOL + "_pack")
            self._compute = getattr(lib, MKL_BF16_SYMBOL + "_compute")
        except AttributeError:
            self._size = self._pack = self._compute = None
        else:
            self._size.restype, self._size.argtypes = ctypes.c_size_t, [c_int] * 4
            self._pack.restype = None
            self._pack.argtypes = [c_int] * 6 + [ptr, c_int, ptr]
            self._compute.restype, self._compute.argtypes = None, gemm_args

    @property
    def packs(self) -> bool:
        return self._pack is not None

    def round(self, x: np.ndarray) -> np.ndarray:
        """(M, K) float32 -> its bf16 bits (uint16), C-contiguous."""
        if self.native is None or x.dtype != np.float32 or x.strides[1] != 4:
            return to_bf16_bits(x)
        out = np.empty(x.shape, np.uint16)
        self.native.round_bf16(x, out)
        return out

    def prepare(self, weight: np.ndarray, rows: int = 512):
        """The (N, K) float32 weight as `__call__` takes it: bf16, packed where possible
        (the packed form does not depend on the rows it was packed for: checked in tests)."""
        bits = self.round(np.ascontiguousarray(weight, dtype=np.float32))
        if not self.packs:
            return bits
        n, k = bits.shape
        packed = np.empty(self._size(_B_MATRIX, rows, n, k), np.uint8)
        self._pack(_ROW_MAJOR, _B_MATRIX, _TRANS, rows, n, k, bits.ctypes.data, k,
                   packed.ctypes.data)
        return packed

    def __call__(self, x: np.ndarray, weight, n: int, bias: np.ndarray | None) -> np.ndarray:
        """C (M, N) = round(x) (M, K) @ W^T (+ bias), W as `prepare` gave it."""
        a = self.round(x)
        m, k = a.shape
        out = np.empty((m, n), np.float32)
        beta = 0.0
        if bias is not None:
            out[...] = bias
            beta = 1.0
        if self.before_compute is not None:
            self.before_compute()
        if weight.dtype == np.uint8:
            self._compute(_ROW_MAJOR, _NO_TRANS, _PACKED, m, n, k, 1.0, a.ctypes.data, k,
                          weight.ctypes.data, k, beta, out.ctypes.data, n)
        else:
            self._gemm(_ROW_MAJOR, _NO_TRANS, _TRANS, m, n, k, 1.0, a.ctypes.data, k,
                       weight.ctypes.data, k, beta, out.ctypes.data, n)
        return out


def bf16_gemm_function(native=None, lib=None) -> Bf16Gemm | None:
    """oneMKL's bf16 GEMM when the preloaded BLAS (or `lib`) exports it, else None.
    native: mlx_service/kernels/native_math.py's kernels, for the activations' rounding."""
    try:
        return Bf16Gemm(lib if lib is not None else ctypes.CDLL(None), native)
    except (OSError, AttributeError):
        return None


def bf16_gemms(native=None, native_gemm=None) -> dict:
    """The bf16 GEMMs this process can run, by name: oneMKL's (where the preloaded BLAS
    exports it) first, then the native one (native_bf16.load's, where the CPU has
    AVX512_BF16). MLX_PRECISION's probe times them on the model's layer."""
    found = {}
    onemkl = bf16_gemm_function(native)
    if onemkl is not None:
        found[ONEMKL] = onemkl
    if native_gemm is not None:
        found[native_gemm.name] = native_gemm
    return found


class Linear:
    """`self(x) -> x @ W.T + b` for 2-D float32 MLX x; W (out, in) as nn.Linear keeps it."""

    def __init__(self, weight, bias, precision: str = "fp32", gemm=None):
        import mlx.core as mx
        self._mx = mx
        self.precision = precision
        self.out_features = int(weight.shape[0])
        self.in_features = int(weight.shape[1])
        self.bias = bias
        # W.T stays a view: the BLAS reads it transposed at the same speed (measured: 67 vs
        # 72 ms for a contiguous copy at 512x1024x3072), so fp32 keeps no second copy.
        # Evaluated here: a lazy op belongs to this thread's stream, and lanes run on others.
        if precision == "fp32":
            self.w_t = weight.T
            mx.eval(self.w_t)
        elif precision == "bf16-emulated":
            self.w_t = weight.astype(mx.bfloat16).astype(mx.float32).T
            mx.eval(self.w_t)
        elif precision == "bf16":
            if gemm is None:
                raise ValueError("bf16 needs a bf16 GEMM (oneMKL's or the native one)")
            self._gemm = gemm
            self.w_bf16 = gemm.prepare(np.asarray(weight, dtype=np.float32))  # (out, in)
        elif precision == "reference":
            self.w_np = np.ascontiguousarray(np.asarray(weight, dtype=np.float32).T)
        else:
            raise ValueError(f"unknown precision {precision!r}")
        self.b_np = None if bias is None else np.asarray(bias, dtype=np.float32)

    def __call__(self, x):
        mx = self._mx
        if self.precision == "fp32":
            return mx.addmm(self.bias, x, self.w_t) if self.bias is not None else x @ self.w_t
        if self.precision == "bf16-emulated":
            xr = x.astype(mx.bfloat16).astype(mx.float32)
            return mx.addmm(self.bias, xr, self.w_t) if self.bias is not None else xr @ self.w_t
        mx.eval(x)
        x_np = np.asarray(x)  # MLX's own buffer, no copy (float32, rows contiguous)
        if self.precision == "reference":
            out = np.asarray(x_np, dtype=np.float32) @ self.w_np
            if self.b_np is not None:
                out += self.b_np
        else:  # one copy back into MLX (about 1 % of the GEMM's time at 512 rows)
            out = self._gemm(x_np, self.w_bf16, self.out_features, self.b_np)
        return mx.array(out)


def fused(linears_weights, precision: str, gemm=None, scales=None) -> Linear:
    """One Linear over several (weight, bias) stacked along the output (fused Q/K/V);
    `scales` multiply each part (the attention scale folded into Q)."""
    import mlx.core as mx
    scales = scales or [1.0] * len(linears_weights)
    w = mx.concatenate([wt * s for (wt, _), s in zip(linears_weights, scales)], axis=0)
    biases = [b for _, b in linears_weights]
    b = (None if any(x is None for x in biases)
         else mx.concatenate([bb * s for bb, s in zip(biases, scales)]))
    mx.eval(w)
    if b is not None:
        mx.eval(b)
    return Linear(w, b, precision, gemm)


class LayerKernels:
    """What every fast forward pass (models/fast_bert.py's CpuBertForward, models/fast_qwen3.py,
    models/fast_modernbert.py) keeps per precision: each layer's matmuls, converted once on
    first use (`use`), dropped when no longer wanted (`forget`: the self-check's reference).
    A subclass says how one layer's kernels are made (`_layer_kernels`); `layer_kernels` are
    those of the precision in use. `native`: mlx_service/kernels/native_math.py's element-wise
    kernels, set by the Embedder (None: numpy's)."""

    def __init__(self, layers, precision: str = "fp32", bf16_gemm=None):
        import mlx.core as mx
        self._mx = mx
        self._layers = list(layers)
        self.bf16_gemm = bf16_gemm  # the bf16 GEMM in use (one of bf16_gemms' values)
        self.native = None
        self._kernels: dict[str, list] = {}
        self.precision = precision
        self.use(precision)

    def _layer_kernels(self, layer, precision: str):
        raise NotImplementedError

    def use(self, precision: str) -> None:
        """Runs the matmuls in `precision` from now on."""
        if precision not in self._kernels:
            self._kernels[precision] = [self._layer_kernels(layer, precision)
                                        for layer in self._layers]
        self.precision = precision

    def one_layer(self, precision: str, bf16_gemm=None, index: int = 0) -> list:
        """Layer `index`'s kernels in `precision`, made for the caller and not kept (bf16 on
        `bf16_gemm`, default the one in use): what the precision probe times."""
        was = self.bf16_gemm
        self.bf16_gemm = bf16_gemm if bf16_gemm is not None else was
        try:
            return self._layer_kernels(self._layers[index], precision)
        finally:
            self.bf16_gemm = was

    def forget(self, precision: str) -> None:
        if precision != self.precision:
            self._kernels.pop(precision, None)

    @property
    def layer_kernels(self) -> list:
        return self._kernels[self.precision]
