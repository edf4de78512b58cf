"""Prometheus text exposition, written by hand: a handful of series needs no dependency."""
from __future__ import annotations

import threading
from bisect import bisect_left

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
BATCH_TOKEN_BUCKETS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768)


class Histogram:
    def __init__(self, buckets):
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # last: +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        out, running = [], 0
        for bound, n in zip((*self.buckets, "+Inf"), self.counts):
            running += n
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {running}')
        lab = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{lab} {self.sum:.6f}", f"{name}_count{lab} {self.count}"]
        return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Thread-safe counters; `render()` gives the /metrics body."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, Histogram] = {}
        self.batch_rows = Histogram(BATCH_ROW_BUCKETS)
        self.batch_padded = Histogram(BATCH_TOKEN_BUCKETS)
        self.batch_seconds = Histogram(LATENCY_BUCKETS)
        self.tokens_total = 0
        self.padded_tokens_total = 0
        self.texts_total = 0
        self.queue_depth = 0

    @staticmethod
    def outcome(status: int) -> str:
        if status < 400:
            return "ok"
        if status == 429:
            return "rejected"
        return "client_error" if status < 500 else "server_error"

    def observe_request(self, endpoint: str, status: int, seconds: float, texts: int = 0) -> None:
        with self._lock:
            key = (endpoint, self.outcome(status), status)
            self.requests[key] = self.requests.get(key, 0) + 1
            self.latency.setdefault(endpoint, Histogram(LATENCY_BUCKETS)).observe(seconds)
            self.texts_total += texts

    def observe_batch(self, rows: int, padded_tokens: int, tokens: int, seconds: float) -> None:
        with self._lock:
            self.batch_rows.observe(rows)
            self.batch_padded.observe(padded_tokens)
            self.batch_seconds.observe(seconds)
            self.tokens_total += tokens
            self.padded_tokens_total += padded_tokens

    def set_queue_depth(self, depth: int) -> None:
        self.queue_depth = depth

    def render(self, queue_depth: int, ready: bool, info: dict[str, str]) -> str:
        p = "mlx_embed"
        with self._lock:
            lines = [f"# HELP {p}_info The served model and runtime.", f"# TYPE {p}_info gauge",
                     f"{p}_info{{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in info.items())
                     + "} 1",
                     f"# HELP {p}_ready 1 once the model is loaded and the worker alive.",
                     f"# TYPE {p}_ready gauge", f"{p}_ready {int(ready)}",
                     f"# HELP {p}_requests_total HTTP requests by endpoint and outcome.",
                     f"# TYPE {p}_requests_total counter"]
            for (endpoint, outcome, status), n in sorted(self.requests.items()):
                lines.append(f'{p}_requests_total{{endpoint="{_escape(endpoint)}",'
                             f'outcome="{outcome}",code="{status}"}} {n}')
            lines += [f"# HELP {p}_request_duration_seconds Request latency.",
                      f"# TYPE {p}_request_duration_seconds histogram"]
            for endpoint, hist in sorted(self.latency.items()):
                lines += hist.lines(f"{p}_request_duration_seconds",
                                    f'endpoint="{_escape(endpoint)}"')
            lines += [f"# HELP {p}_batch_size_rows Rows per forward pass.",
                      f"# TYPE {p}_batch_size_rows histogram",
                      *self.batch_rows.lines(f"{p}_batch_size_rows"),
                      f"# HELP {p}_batch_padded_tokens Padded tokens per forward pass.",
                      f"# TYPE {p}_batch_padded_tokens histogram",
                      *self.batch_padded.lines(f"{p}_batch_padded_tokens"),
                      f"# HELP {p}_batch_duration_seconds Time per forward pass.",
                      f"# TYPE {p}_batch_duration_seconds histogram",
                      *self.batch_seconds.lines(f"{p}_batch_duration_seconds"),
                      f"# HELP {p}_tokens_total Real (unpadded) tokens embedded.",
                      f"# TYPE {p}_tokens_total counter", f"{p}_tokens_total {self.tokens_total}",
                      f"# HELP {p}_padded_tokens_total Tokens computed including padding.",
                      f"# TYPE {p}_padded_tokens_total counter",
                      f"{p}_padded_tokens_total {self.padded_tokens_total}",
                      f"# HELP {p}_texts_total Texts embedded.",
                      f"# TYPE {p}_texts_total counter", f"{p}_texts_total {self.texts_total}",
                      f"# HELP {p}_queue_depth Requests waiting for the inference worker.",
                      f"# TYPE {p}_queue_depth gauge", f"{p}_queue_depth {queue_depth}"]
        return "\n".join(lines) + "\n"
