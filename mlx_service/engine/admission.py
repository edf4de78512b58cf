"""Admission control: how much embedding work may be in flight, counted, and refused beyond.

After TEI's router: a request takes a slot before its body is even read (so a refusal costs
nothing), then reserves its tokens once they are known. Beyond either limit the answer is
429 at once; nothing waits in a queue that is not counted here. Probes never come here.

The token limit alone says nothing about time: on a slow CPU the default admits minutes of
work. So the service measures its own rate (tokens answered per second of busy time, decayed
over RATE_WINDOW_S of busy time) and admits a request beside others only when the work in
flight, its own included, can be done within MLX_ADMISSION_TIME_PERCENT (50) of
MLX_REQUEST_TIMEOUT at that rate; beyond, 429 at once with how long to wait. Until it has
measured, it assumes PRIOR_TOKENS_PER_S (a slow CPU's rate for MiniLM), so a burst at start
cannot overcommit either. A request alone is always admitted (refusing it could not make it
faster).
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

RATE_WINDOW_S = 20.0   # busy seconds over which the measured rate forgets
MIN_BUSY_S = 3.0       # busy seconds measured before the rate is trusted
PRIOR_TOKENS_PER_S = 1000.0  # assumed until then (2 shared cores without OpenBLAS: ~650)


@dataclass
class Ticket:
    tokens: int = 0
    open: bool = True


class Admission:
    def __init__(self, max_requests: int, max_tokens: int):
        self.max_requests = max_requests
        self.max_tokens = max_tokens
        self._lock = threading.Condition()
        self.requests = 0
        self.tokens = 0
        self.refused = {"requests": 0, "tokens": 0, "time": 0}
        # The measured rate: decayed sums of tokens answered and of busy seconds.
        self._done_tokens = 0.0
        self._busy_s = 0.0
        self._busy_mark: float | None = None  # when the busy time was last accounted

    # --- the measured rate -----------------------------------------------------------------
    def _account(self, now: float) -> None:
        """Add the busy time since the last mark (busy: a request in flight), decaying both
        sums. Called under the lock, before `requests` changes."""
        if self._busy_mark is not None and self.requests > 0:
            spent = now - self._busy_mark
            keep = math.exp(-spent / RATE_WINDOW_S)
            self._done_tokens *= keep
            self._busy_s = self._busy_s * keep + spent
        self._busy_mark = now

    def rate(self) -> float:
        """Tokens per busy second: as measured, or PRIOR_TOKENS_PER_S until it is."""
        with self._lock:
            return self._rate() or PRIOR_TOKENS_PER_S

    def _rate(self) -> float | None:
        if self._busy_s < MIN_BUSY_S or self._done_tokens <= 0:
            return None
        return self._done_tokens / self._busy_s

    def done(self, ticket: Ticket) -> None:
        """The ticket's request was answered: its tokens count toward the rate."""
        with self._lock:
            self._account(time.monotonic())
            self._done_tokens += ticket.tokens

    def seconds_over(self, ticket: Ticket, budget_s: float) -> float | None:
        """None when the ticket may go on; else the seconds of work in flight beyond
        `budget_s` at the measured rate (the ticket is then refused and counted)."""
        with self._lock:
            rate = self._rate() or PRIOR_TOKENS_PER_S
            others = self.tokens - ticket.tokens
            if self.requests <= 1 or others <= 0:
                return None
            over = self.tokens / rate - budget_s
            if over <= 0:
                return None
            self.refused["time"] += 1
            return over

    def enter(self) -> Ticket | None:
        """A request slot, or None when `max_requests` are already in flight."""
        with self._lock:
            if self.requests >= self.max_requests:
                self.refused["requests"] += 1
                return None
            self._account(time.monotonic())
            self.requests += 1
            return Ticket()

    def reserve(self, ticket: Ticket, tokens: int) -> bool:
        """Reserve the request's tokens; False when they would pass `max_tokens` (a request
        larger than the whole budget is the caller's to refuse: it could never fit)."""
        with self._lock:
            if self.tokens + tokens > self.max_tokens:
                self.refused["tokens"] += 1
                return False
            self.tokens += tokens
            ticket.tokens = tokens
            return True

    def settle(self, ticket: Ticket, tokens: int) -> None:
        """Replace a reservation made on an estimate by the real count (at most the estimate:
        what is handed back may admit someone else)."""
        with self._lock:
            tokens = min(tokens, ticket.tokens)
            self.tokens -= ticket.tokens - tokens
            ticket.tokens = tokens
            self._lock.notify_all()

    def leave(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket.open:
                ticket.open = False
                self._account(time.monotonic())
                self.requests -= 1
                self.tokens -= ticket.tokens
                self._lock.notify_all()

    def wait_empty(self, timeout: float) -> bool:
        """Shutdown: wait until no admitted request is left (none can be admitted then)."""
        with self._lock:
            return self._lock.wait_for(lambda: self.requests == 0, timeout)

    def snapshot(self) -> dict[str, int | float | None]:
        with self._lock:
            rate = self._rate()
            return {"requests": self.requests, "tokens": self.tokens,
                    "max_requests": self.max_requests, "max_tokens": self.max_tokens,
                    "refused_requests": self.refused["requests"],
                    "refused_tokens": self.refused["tokens"],
                    "refused_time": self.refused["time"],
                    "tokens_per_s": round(rate, 1) if rate is not None else None}
