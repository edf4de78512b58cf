"""The CPU fast path (mlx_service/models/fast_bert.py): exact enough, same vectors, and switchable.

The kernels and the forward pass run in the service's venv (numpy and MLX live there, not in
the test venv): each test runs a short script there and checks what it prints.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from mlx_service.kernels import blas
from tests.service_support import assert_parity, http
from tests.support import FIXTURES, REPO_ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the CPU fast path is what Linux runs")


def run_in_service_venv(service_py, script: str, timeout: float = 300) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    # The BLAS the service would run on, with its thread settings.
    chosen = blas.choose(env.get("MLX_BLAS", "auto"), env, python=str(service_py))
    env = blas.exec_env(chosen, env) or env
    done = subprocess.run([str(service_py), "-c", script], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


KERNELS = r"""
import json, math
import numpy as np
import mlx.core as mx
from mlx_service.models import fast_bert

x = np.linspace(-12, 12, 300007, dtype=np.float32)   # not a multiple of the chunk size
exact = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
got = fast_bert.gelu_erf_(x.copy())
gelu_err = float(np.abs(got - exact).max())
try:
    fast_bert.gelu_erf_(x[::2])
    strided_refused = False
except ValueError:
    strided_refused = True

rng = np.random.default_rng(7)
scores = (rng.standard_normal((3, 4, 9, 9)) * 6).astype(np.float32)
mask = np.ones((3, 9), np.float32); mask[1, 5:] = 0; mask[2, 1:] = 0
bias = ((1 - mask) * fast_bert.MASK_BIAS)[:, None, None, :]
ref = scores.astype(np.float64) + bias
ref = np.exp(ref - ref.max(-1, keepdims=True)); ref /= ref.sum(-1, keepdims=True)
work = scores.copy()
sums = fast_bert.exp_rows_(work, bias)
softmax_err = float(np.abs(work / sums - ref).max())
padding_weight = float((work / sums)[1, :, :, 5:].max())

# The same softmax on the real positions only (right-padded rows, what Embedder sends).
lengths = fast_bert.right_padded_lengths(mask.astype(np.int32))
real = scores.copy()
real_sums = fast_bert.exp_real_rows_(real, lengths)
real_w = real / real_sums
real_err = max(float(np.abs(real_w[b, :, :n] - ref[b, :, :n]).max())
               for b, n in enumerate(lengths))
real_padding_weight = float(real_w[1, :, :, 5:].max())
real_finite = bool(np.isfinite(real_w).all())
left_padded = fast_bert.right_padded_lengths(np.array([[0, 1, 1]], np.int32)) is None
inner = rng.standard_normal((2, 6, 10)).astype(np.float32)
gelu_rows = inner.copy()
fast_bert.gelu_real_rows_(gelu_rows, np.array([6, 2]))
whole = fast_bert.gelu_erf_(inner.copy())
gelu_rows_ok = bool(np.array_equal(gelu_rows[0], whole[0])
                    and np.array_equal(gelu_rows[1, :2], whole[1, :2])
                    and np.array_equal(gelu_rows[1, 2:], inner[1, 2:]))

fresh = mx.arange(12).astype(mx.float32) * 2
mx.eval(fresh)
shared = np.shares_memory(fast_bert.writable(fresh), np.asarray(fresh))
t = mx.arange(12).reshape(3, 4).astype(mx.float32).T
mx.eval(t)
copied = not np.shares_memory(fast_bert.writable(t), np.asarray(t))

lanes = fast_bert.Lanes(2)
doubled = lanes.map(lambda v: v * 2, [1, 2])
try:
    lanes.map(lambda v: 1 / v, [1, 0])
    raised = False
except ZeroDivisionError:
    raised = True
print(json.dumps({"gelu_err": gelu_err, "strided_refused": strided_refused,
                  "softmax_err": softmax_err, "padding_weight": padding_weight,
                  "real_err": real_err, "real_padding_weight": real_padding_weight,
                  "real_finite": real_finite, "left_padded": left_padded,
                  "gelu_rows_ok": gelu_rows_ok,
                  "shared": bool(shared), "copied": bool(copied),
                  "doubled": doubled, "raised": raised}))
"""


def test_kernels_are_exact_to_float32(service_py):
    out = run_in_service_venv(service_py, KERNELS)
    assert out["gelu_err"] < 2e-6         # erf form of GELU, not the tanh approximation (5e-4)
    assert out["strided_refused"]
    assert out["softmax_err"] < 1e-6
    assert out["padding_weight"] == 0.0   # masked positions get no attention at all
    # padding-free softmax: the same weights on real rows, none on padding, all finite
    assert out["real_err"] < 1e-6 and out["real_padding_weight"] == 0.0 and out["real_finite"]
    assert out["left_padded"]  # a mask that is not ones-then-zeros takes exp_rows_
    assert out["gelu_rows_ok"]  # GELU on real positions, padding left as it was
    assert out["shared"] and out["copied"]  # in place only in a fresh contiguous buffer
    assert out["doubled"] == [2, 4] and out["raised"]  # lanes return in order, errors surface


FORWARD = r"""
import json
import numpy as np
from mlx_service.models.embedder import Embedder
from mlx_service.models.folder import read_spec

items = json.load(open(FIXTURE))["items"]
ref = np.array([i["embedding"] for i in items], np.float32)
ref /= np.linalg.norm(ref, axis=1, keepdims=True)
spec = read_spec(None)
plain, fast1, fast2 = (Embedder(spec, cpu_fast=False), Embedder(spec, lanes=1, precision="fp32"),
                       Embedder(spec, lanes=2, precision="fp32"))  # bf16: its own tests
rows = plain.tokenize([i["text"] for i in items])
out = {"forward": [plain.forward, fast1.forward, fast2.forward], "lanes": fast2.lanes}
for name, e in (("plain", plain), ("fast1", fast1), ("fast2", fast2)):
    batched = e.embed(rows)
    single = np.stack([e.embed([r])[0] for r in rows])
    out[name] = float(min((batched * ref).sum(1).min(), (single * ref).sum(1).min()))
corpus = json.load(open("tasks/bench/data/corpus.json"))
pool = plain.tokenize(corpus["short"] + corpus["medium"] + corpus["long"])
rng = np.random.default_rng(3)
worst = 1.0
for _ in range(12):
    batch = [pool[i] for i in rng.choice(len(pool), size=int(rng.integers(2, 14)), replace=False)]
    a, b = plain.embed(batch), fast2.embed(batch)
    worst = min(worst, float((a * b).sum(1).min()))
out["fast_vs_plain"] = worst
# A pass bigger than CPU_LANE_TOKENS per lane runs as sub-passes: each row lands in place.
from mlx_service.models.batch_plan import sub_passes
out["sub_passes"] = len(sub_passes([len(r) for r in pool], fast2.lanes))
out["sub_passes_vs_plain"] = float((plain.embed(pool) * fast2.embed(pool)).sum(1).min())
print(json.dumps(out))
"""


def test_fast_forward_equals_the_library_and_the_reference(service_py):
    script = f"FIXTURE = {str(FIXTURES / 'minilm-reference.json')!r}\n" + FORWARD
    out = run_in_service_venv(service_py, script)
    assert out["forward"] == ["mlx", "cpu-fast", "cpu-fast"] and out["lanes"] == 2
    for name in ("plain", "fast1", "fast2"):  # batched (padded) and one by one
        assert out[name] >= 0.99999, (name, out)
    assert out["fast_vs_plain"] >= 0.99999  # rows split over lanes land where they belong
    assert out["sub_passes"] > 1 and out["sub_passes_vs_plain"] >= 0.99999


def test_info_names_the_fast_path(service):
    status, info = service.get("/info")
    assert status == 200
    if info["device"] != "cpu":
        pytest.skip("the fast path is for the CPU device")
    assert info["forward"] == "cpu-fast" and info["cpu_lanes"] >= 1
    assert info["limits"]["coalesce_rows"] == 4096
    if info["blas"] == "openblas":
        assert info["blas_threads"] >= 1


def batch_rows(svc) -> dict[str, float]:
    """The service's rows-per-pass histogram: rows in all passes (sum), passes (count)."""
    text = http("GET", svc.url + "/metrics")[2].decode()
    values = dict(line.rsplit(" ", 1) for line in text.splitlines()
                  if line.startswith("mlx_embed_batch_size_rows_"))
    return {"sum": float(values["mlx_embed_batch_size_rows_sum"]),
            "count": float(values["mlx_embed_batch_size_rows_count"])}


def test_fast_path_off_and_no_coalescing_still_give_the_reference(service_factory, reference):
    svc = service_factory(env={"MLX_CPU_FAST": "0", "MLX_COALESCE_ROWS": "1"})
    status, info = svc.get("/info")
    assert info["forward"] == "mlx" and info["limits"]["coalesce_rows"] == 1
    items = reference["items"]
    status, body = svc.post("/embed", {"input": [i["text"] for i in items]})
    assert status == 200
    assert_parity(items, body["embeddings"])

    # 12 one-text clients at once: each forward pass takes one request's row, no more.
    before = batch_rows(svc)
    answers: dict[int, list] = {}

    def client(k: int) -> None:
        answers[k] = svc.post("/embed", {"input": items[k % len(items)]["text"]})[1]["embeddings"]

    threads = [threading.Thread(target=client, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(answers) == 12
    for k, vectors in answers.items():
        assert_parity([items[k % len(items)]], vectors)
    after = batch_rows(svc)
    assert after["sum"] - before["sum"] == 12 and after["count"] - before["count"] == 12
