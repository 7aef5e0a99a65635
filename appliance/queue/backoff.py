"""Exponential backoff with equal jitter, capped, that honours the instance's Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from appliance.limits import MAX_RETRY_AFTER_S


@dataclass
class Backoff:
    base_s: float
    cap_s: float
    retry_after_cap_s: float = MAX_RETRY_AFTER_S
    attempt: int = 0
    rng: random.Random = field(default_factory=random.SystemRandom)

    def next_delay(self, retry_after_s: float | None = None) -> float:
        """The wait before the next try. A Retry-After from the instance wins over our own schedule."""
        self.attempt += 1
        if retry_after_s is not None and retry_after_s >= 0:
            return min(retry_after_s, self.retry_after_cap_s, MAX_RETRY_AFTER_S)
        ceiling = min(self.cap_s, self.base_s * (2 ** min(self.attempt - 1, 30)))
        # Equal jitter (half the step fixed, half random): many appliances behind one outage do not
        # come back in step, and none retries at once, as full jitter's draws near zero would.
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0
