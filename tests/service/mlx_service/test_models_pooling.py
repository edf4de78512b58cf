"""mlx_service/models/pooling.py against sentence-transformers' Pooling.forward, transcribed
to numpy here: every mode and their concatenation, right-padded rows of mixed lengths, and
the prompt's tokens left out when a model pools with include_prompt false."""
from __future__ import annotations

import json
import subprocess

from tests.support import REPO_ROOT
from tests.service_support import spawn_env

SCRIPT = r'''
import json
import mlx.core as mx
import numpy as np
from mlx_service.models.pooling import SUPPORTED_POOLING, pool

def st_pool(modes, tokens, mask, prompt_length=None):
    """sentence-transformers' Pooling.forward, on numpy arrays."""
    mask = mask.astype(np.float32).copy()
    if prompt_length is not None:
        mask[:, :prompt_length] = 0
    m = mask[..., None]
    out = []
    for mode in modes:
        if mode == "cls":
            out.append(tokens[:, 0])
        elif mode == "max":
            out.append(np.where(m > 0, tokens, -1e9).max(1))
        elif mode in ("mean", "mean_sqrt_len"):
            total, count = (tokens * m).sum(1), np.maximum(m.sum(1), 1e-9)
            out.append(total / count if mode == "mean" else total / np.sqrt(count))
        elif mode == "weightedmean":
            w = m * np.arange(1, tokens.shape[1] + 1, dtype=np.float32)[None, :, None]
            out.append((tokens * w).sum(1) / np.maximum(w.sum(1), 1e-9))
        elif mode == "lasttoken":
            seq = mask.shape[1]
            values, idx = mask[:, ::-1].max(1), mask[:, ::-1].argmax(1)
            idx = np.where(values == 0, seq - 1, idx)
            out.append((tokens * m)[np.arange(len(tokens)), seq - idx - 1])
    return np.concatenate(out, axis=-1)

rng = np.random.default_rng(7)
lengths = [9, 3, 6, 1]
tokens = rng.normal(size=(4, 9, 8)).astype(np.float32)
mask = np.zeros((4, 9), np.int32)
for row, n in enumerate(lengths):
    mask[row, :n] = 1
worst = {}
cases = [(m,) for m in SUPPORTED_POOLING] + [("cls", "mean"), ("max", "mean", "lasttoken")]
for modes in cases:
    for skip in (None, 2):
        got = np.array(pool(mx, modes, mx.array(tokens), mx.array(mask),
                            None if skip is None else mx.array([skip] * 4)))
        want = st_pool(modes, tokens, mask, skip)
        # rows whose prompt covers them entirely are degenerate in both: compare the rest
        rows = [i for i, n in enumerate(lengths) if skip is None or n > skip]
        worst["+".join(modes) + ("" if skip is None else " skip")] = float(
            np.abs(got[rows] - want[rows]).max())
print(json.dumps(worst))
'''


def test_every_pooling_mode_equals_sentence_transformers(service_py):
    done = subprocess.run([str(service_py), "-c", SCRIPT], cwd=REPO_ROOT, env=spawn_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    worst = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(worst) == 16
    assert all(err < 1e-5 for err in worst.values()), worst
