"""What one run of the appliance did, for the caller of ``run_appliance`` and the tests."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class RunnerStats:
    started: float = field(default_factory=time.monotonic)
    claimed: int = 0
    answered: int = 0
    errors: int = 0
    recovered: int = 0
    duplicates_avoided: int = 0
    undelivered: int = 0
