"""The order of `inv bench --rerank`'s measurements: rounds in which every side runs, the order
rotating so that none always goes first (warm caches, turbo, neighbours), as tasks/bench/run.py's
`interleaved` does; a costly side (16 clients at once: 16 requests a run) may run in fewer
rounds, spread over them (pure)."""
from __future__ import annotations

from typing import Callable, Mapping

from tasks.core.say import Say, quiet


def due_rounds(runs: int, rounds: int) -> set[int]:
    """The rounds (0-based) in which a side measured `runs` times out of `rounds` runs: all of
    them, or `runs` spread evenly (the middle one for a single run)."""
    if not 1 <= runs:
        raise ValueError(f"a side must run at least once, not {runs}")
    if runs >= rounds:
        return set(range(rounds))
    return {int((k + 0.5) * rounds / runs) for k in range(runs)}


def interleaved_rounds(sides: Mapping[str, Callable[[], float]], runs: Mapping[str, int],
                       say: Say = quiet, label: str = "") -> dict[str, list[float]]:
    """Seconds per side, one per run; `runs[side]` runs each (rounds = the most of them)."""
    rounds = max(runs[name] for name in sides)
    due = {name: due_rounds(runs[name], rounds) for name in sides}
    names = list(sides)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            if r in due[name]:
                seconds[name].append(sides[name]())
        say(f"{label}round {r + 1}/{rounds} done")
    return seconds
