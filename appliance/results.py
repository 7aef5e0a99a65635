"""Every result the appliance sends back that no probe made: the error results of the job path.

The dispatcher builds a probe's own answer; everything that ends a job without one (shut down,
interrupted, held, refused, too large to read) is built here, with the reason the operator reads."""

from __future__ import annotations

from appliance.interfaces import Outcome
from appliance.payload import build_results
from appliance.queue.records import OutputRecord

SHUTDOWN_ERROR = "the appliance shut down before this probe finished; the instance may send it again"
INTERRUPTED_ERROR = (
    "the appliance stopped while this probe ran; it is not run again because {topic} may have side effects"
)
RESTARTED_ERROR = (
    "this job was started {starts} times and each time the appliance stopped before it finished; it is "
    "not run again, since it may be what stops the appliance: check the appliance log, then re-send it"
)
HELD_ERROR = "not run: {reason}"
TOO_LARGE_ERROR = (
    "the output record is larger than the {cap} bytes the appliance reads in one answer; it is not run: "
    "make its payload smaller"
)
INTERNAL_ERROR = "internal error while handling this job ({kind}); see the appliance log"


def error_outcome(record: OutputRecord, error: str) -> Outcome:
    """The answer to ``record`` that carries only ``error`` (ECC ``error_string``), no probe result."""
    payload = build_results(
        result=None, echo_record=record.echo(), parameters=(), probe_time_ms=0, error=error
    )
    return Outcome(payload, error, 0, "error")
