"""What `inv stress` runs: its options, built once from the task's flags."""
from __future__ import annotations

from dataclasses import dataclass

from tasks.core.flags import count, seconds

# What a full run sends; a smaller run leaves the rows that need it "skipped".
FULL_FUZZ_CASES = 10_000


@dataclass
class StressOptions:
    flood_seconds: float = 20.0
    fuzz_cases: int = FULL_FUZZ_CASES
    soak_seconds: float = 600.0
    api_key: str | None = None

    @classmethod
    def from_flags(cls, quick: bool = False, soak=None, fuzz=None, flood=None,
                   api_key: str | None = None) -> "StressOptions":
        """--quick's short run, then each flag given over it (empty means its default)."""
        options = cls(flood_seconds=10 if quick else 20,
                      fuzz_cases=2000 if quick else FULL_FUZZ_CASES,
                      soak_seconds=0 if quick else 600, api_key=api_key)
        if soak not in (None, ""):
            options.soak_seconds = max(0.0, seconds(soak, "soak"))
        if flood not in (None, ""):
            options.flood_seconds = max(1.0, seconds(flood, "flood"))
        if fuzz is not None:
            options.fuzz_cases = count(fuzz, "--fuzz", unit="requests")
        return options
