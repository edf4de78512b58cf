"""Admission control: how much embedding work may be in flight, counted, and refused beyond.

After TEI's router: a request takes a slot before its body is even read (so a refusal costs
nothing), then reserves its tokens once they are known. Beyond either limit the answer is
429 at once; nothing waits in a queue that is not counted here. Probes never come here.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass


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
        self.refused = {"requests": 0, "tokens": 0}

    def enter(self) -> Ticket | None:
        """A request slot, or None when `max_requests` are already in flight."""
        with self._lock:
            if self.requests >= self.max_requests:
                self.refused["requests"] += 1
                return None
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
                self.requests -= 1
                self.tokens -= ticket.tokens
                self._lock.notify_all()

    def wait_empty(self, timeout: float) -> bool:
        """Shutdown: wait until no admitted request is left (none can be admitted then)."""
        with self._lock:
            return self._lock.wait_for(lambda: self.requests == 0, timeout)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"requests": self.requests, "tokens": self.tokens,
                    "max_requests": self.max_requests, "max_tokens": self.max_tokens,
                    "refused_requests": self.refused["requests"],
                    "refused_tokens": self.refused["tokens"]}
