"""What a HeartbeatProbe reports, made before the runner and the probes so both can hold it.

The runner writes into it (jobs in flight, counts); the heartbeat probe reads it. Neither needs the
other, so the app wires them without a cycle."""

from __future__ import annotations

import time
from collections.abc import Callable

from appliance.gate import JobGate
from appliance.health import Health
from appliance.queue.durable import Outbox
from appliance.runstats import RunnerStats


class LiveStatus:
    def __init__(
        self,
        *,
        version: str,
        health: Health,
        outbox: Outbox,
        hold: Callable[[], str | None] = lambda: None,
        gate: JobGate | None = None,
    ) -> None:
        self.version = version  # reported in HeartbeatProbe answers; never written to ecc_agent
        self.health = health
        self.stats = RunnerStats()
        self.in_flight = 0
        self.hold = hold  # why no new work may be claimed now (appliance.validity), or None
        self.gate = gate
        self._outbox = outbox

    def report(self) -> dict[str, str]:
        """What a HeartbeatProbe answers."""
        held = self.hold()
        paused = {"mid_operational_state": "Paused", "paused_reason": held[:500]} if held else {}
        return paused | {
            "version": self.version,
            "uptime_s": str(int(time.monotonic() - self.stats.started)),
            "jobs_in_flight": str(self.in_flight),
            "jobs_answered": str(self.stats.answered),
            "outbox_depth": str(self._outbox.count()),
            "rss_kb": str(_rss_kb()),
            **self.health.summary(),
            "quarantined": "true" if self.gate is not None and self.gate.quarantined() else "false",
        }


def _rss_kb() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
