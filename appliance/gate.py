"""What a polled job must pass before it starts, beside the policy: quarantine and replay protection.

The runner asks ``quarantined()`` before every poll (so probes stop within one poll, while heartbeats
and the outbox go on), ``refusal(record)`` for each record it polled, and ``started(record)`` before a
job's probe runs. Transitions of the quarantine and every refusal are audited here.
"""

from __future__ import annotations

import logging

from appliance.interfaces import AuditSink
from appliance.quarantine import Quarantine, QuarantineState
from appliance.queue.records import OutputRecord
from appliance.replay import RunLedger

log = logging.getLogger(__name__)

# Answered while quarantined: the instance's monitor sees the appliance alive.
QUARANTINE_EXEMPT = frozenset({"HeartbeatProbe"})
QUARANTINED = (
    "the appliance is quarantined ({reason}); no probe runs until an admin runs 'midbox quarantine off' "
    "(or removes the quarantine file)"
)


class JobGate:
    def __init__(self, quarantine: Quarantine, ledger: RunLedger, audit: AuditSink) -> None:
        self._quarantine = quarantine
        self._ledger = ledger
        self._audit = audit
        # As last audited, kept on disk: a quarantine lifted while the appliance was stopped is
        # audited at the next start, and one still on is not audited again.
        self._state: QuarantineState | None = None

    def quarantined(self) -> bool:
        state = self._quarantine.read()
        last = self._state if self._state is not None else self._quarantine.audited()
        if state.on != last.on:
            if state.on:
                log.warning("quarantined (%s): no probe runs; heartbeats and the outbox go on", state.reason)
                self._audit.record("quarantine.on", {"reason": state.reason, "by": state.by})
            else:
                log.warning("quarantine lifted: probes run again")
                lifted = self._quarantine.lifted()
                self._audit.record(
                    "quarantine.off", {"reason": lifted.reason or last.reason, "by": lifted.by or "file"}
                )
            self._quarantine.remember(state)
        self._state = state
        return state.on

    def quarantine_refusal(self, record: OutputRecord) -> str | None:
        """For a job about to start (also one resumed after a restart)."""
        if record.topic in QUARANTINE_EXEMPT:
            return None
        state = self._quarantine.read()
        if not state.on:
            return None
        self._audit.record(
            "job.quarantined",
            {"job": record.sys_id, "topic": record.topic[:80], "target": record.source[:255]},
        )
        return QUARANTINED.format(reason=state.reason or "no reason given")

    def refusal(self, record: OutputRecord) -> str | None:
        """Replay protection for a record just polled: too old, dated ahead, or already run."""
        reason = self._ledger.refusal(record.sys_id, record.sys_created_on)
        if reason is not None:
            self._audit.record(
                "replay.refused", {"job": record.sys_id, "topic": record.topic[:80], "reason": reason[:200]}
            )
        return reason

    def started(self, record: OutputRecord) -> None:
        self._ledger.add(record.sys_id)

    @property
    def state(self) -> QuarantineState | None:
        return self._state
