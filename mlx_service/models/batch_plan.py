"""Planning forward passes: which rows go together, and how one pass is cut over lanes.

Pure functions of row lengths (no threads, no MLX), so both the batching thread
(mlx_service/engine/worker.py) and the model runner (mlx_service/models/embedder.py) use them,
and tests check them without a model.
"""
from __future__ import annotations

from typing import Sequence

# A forward pass has a fixed cost (dozens of kernel launches and syncs) worth about this many
# padded tokens of compute on a CPU (MiniLM, 2 cores: ~4 ms for one short row, ~0.13 ms a
# token). Splitting a batch pays only when it saves more padding than that.
PASS_OVERHEAD_TOKENS = 32
LOOKAHEAD_ROWS = 64
# On the CPU fast path a pass runs in sub-passes of at most this many padded tokens per lane
# (models/embedder.py): smaller passes pad less (their rows' lengths are closer) and keep a
# lane's attention scores and FFN activations in cache. MiniLM, the 512 prose texts, AMD EPYC
# Zen 5, 2 lanes, texts/s by padded tokens per lane: 4096: 104.5, 2048: 118.8, 1024: 123.7,
# 512: 125.3 (OpenBLAS's own kernels); 4096: 65.1, 1024: 73.8, 512: 76.5 (its Haswell ones).
# 1024 keeps the weight matmuls of larger models (M = 1024 rows) efficient too.
CPU_LANE_TOKENS = 1024


def plan_batches(lengths: Sequence[int], max_tokens: int,
                 pass_overhead: int = PASS_OVERHEAD_TOKENS) -> list[list[int]]:
    """Cut rows into forward passes: indices into `lengths`, longest rows first.

    A batch costs (rows x its longest row) padded tokens. A batch closes when the next row
    would push that past `max_tokens`, or when the next row is less than half the batch's
    width and padding it and the rows after it (those that would still fit) to that width
    would waste more than a pass costs (`pass_overhead` tokens): a 4-token row rides with
    12-token ones, a 40-token row does not ride with 256-token ones. A row longer than
    `max_tokens` goes alone: truncation already bounds it by the model's max_seq_length.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for pos, i in enumerate(order):
        n = max(lengths[i], 1)
        if current:
            close = (len(current) + 1) * width > max_tokens
            if not close and 2 * n < width:
                room = min(max_tokens // width - len(current), LOOKAHEAD_ROWS)
                waste = sum(width - max(lengths[j], 1) for j in order[pos:pos + room])
                close = waste > pass_overhead
            if close:
                batches.append(current)
                current = []
        if not current:
            width = n
        current.append(i)
    if current:
        batches.append(current)
    return batches


def sub_passes(lengths: Sequence[int], lanes: int,
               lane_tokens: int = CPU_LANE_TOKENS) -> list[list[int]]:
    """A pass cut into sub-passes of at most `lane_tokens` padded tokens per lane (indices
    into `lengths`), or one sub-pass holding every row when it is no bigger than that."""
    budget = lane_tokens * max(1, lanes)
    if not lengths or len(lengths) * max(max(lengths), 1) <= budget:
        return [list(range(len(lengths)))]
    return plan_batches(lengths, budget)


def split_rows(lengths: Sequence[int], parts: int) -> list[list[int]]:
    """Cut one forward pass into at most `parts` parts of similar cost, run side by side
    (one per core): indices into `lengths`, each part a run of the longest-first order, so
    each part, padded to its own longest row, wastes little. A part costs about
    rows x width x (1 + width / 64): the matmuls, plus attention's width^2 term (the weight
    is an estimate; it only has to rank the possible cuts)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))

    def cost(part: Sequence[int]) -> float:
        if not part:
            return 0.0
        width = max(max(lengths[i] for i in part), 1)
        return len(part) * width * (1 + width / 64)

    out = [order] if order else []
    while 0 < len(out) < parts:
        biggest = max(range(len(out)), key=lambda i: cost(out[i]))
        part = out[biggest]
        if len(part) < 2:
            break
        cut = min(range(1, len(part)), key=lambda k: max(cost(part[:k]), cost(part[k:])))
        out[biggest:biggest + 1] = [part[:cut], part[cut:]]
    return out
