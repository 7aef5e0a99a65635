"""Topic → probe. Every output record ends as exactly one result: a probe's, or an error's.

Nothing that an output record carries can crash the appliance or vanish: unknown topics, refused
topics, malformed or hostile payloads, denied targets, timeouts and probe bugs each become an
error result with a one-line reason, and an audit entry.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import replace

from appliance.asks import AskCache
from appliance.errors import (
    ApplianceError,
    CredentialRejectedError,
    EveryCredentialRejectedError,
    PayloadError,
    TargetDeniedError,
    TargetUnreachableError,
)
from appliance.interfaces import Outcome
from appliance.limits import MAX_PAYLOAD_BYTES
from appliance.payload import one_line, parse_parameters, results_and_error
from appliance.probes.base import Job, JobAudit, Probe, ProbeContext
from appliance.queue.records import OutputRecord
from appliance.ratelimit import RateLimitedError
from appliance.scope import unsupported_parameters, unsupported_topic

log = logging.getLogger(__name__)

# Topics a Java MID runs that this appliance refuses by design (see ecc-protocol.md).
REFUSED_TOPICS = frozenset(
    {"Command", "SystemCommand", "JavascriptProbe", "PowerShell", "WMIRunner", "JDBCProbe"}
)
NOT_PERMITTED = "topic not permitted on this appliance"


def rerun_safe(record: OutputRecord, probes: Mapping[str, Probe]) -> bool:
    """Whether a job a crash interrupted may run again: its probe says, from the job's parameters.
    A topic no probe answers, or a payload that does not parse, fails the same way again (an error
    result), so running it again is safe."""
    probe = probes.get(record.topic)
    if probe is None:
        return True
    try:
        # surrogatepass: the instance's JSON may carry lone surrogates, which strict UTF-8 refuses.
        size = len(record.payload.encode("utf-8", "surrogatepass"))
        params = dict(parse_parameters(record.payload, size + 1))
    except ApplianceError:
        return True
    return probe.rerun_safe(params)


def _aim(params: tuple[tuple[str, str], ...]) -> dict[str, object]:
    """Port and credential alias as the job asked for them (None when it did not), for the audit log."""
    named = dict(params)
    port = named.get("port")
    return {
        "port": int(port) if port is not None and port.isdigit() and len(port) <= 5 else None,
        "credential": (named.get("credential") or None) and named["credential"][:80],
    }


class Dispatcher:
    def __init__(self, probes: Mapping[str, Probe], ctx: ProbeContext) -> None:
        self._probes = dict(probes)
        self._ctx = ctx
        self._asks = AskCache()

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(self._probes)

    def rerun_safe(self, record: OutputRecord) -> bool:
        return rerun_safe(record, self._probes)

    async def handle(self, record: OutputRecord) -> Outcome:
        """Run one output record to its result. Only cancellation (shutdown) escapes from here."""
        started = time.monotonic()
        params: tuple[tuple[str, str], ...] = ()
        result = None
        error: str | None = None
        kind = "error"
        ran = False
        probe = self._probes.get(record.topic)
        job_audit = JobAudit(self._ctx.audit, record.sys_id, record.topic[:80])
        lease = self._ctx.limiter.lease() if self._ctx.limiter is not None else None
        answered: bool | None = None  # did the target answer (None: never reached, or not its fault)
        try:
            kind = "refused"
            if record.refusal:
                self._audit("record.refused", record, {"reason": one_line(record.refusal, 200)})
                raise PayloadError(record.refusal)
            if (unsupported := unsupported_topic(record.topic, record.name)) is not None:
                self._audit("topic.refused", record, {"reason": "no public payload layout"})
                raise ApplianceError(unsupported)
            if probe is None or record.topic in REFUSED_TOPICS:
                self._audit("topic.refused", record, {})
                raise ApplianceError(f"{NOT_PERMITTED}: {record.topic[:80]!r}")
            # A probe may cap its payload below the general cap (midbox.config: one config file).
            cap = min(self._ctx.limits.payload_bytes, getattr(probe, "max_payload_bytes", MAX_PAYLOAD_BYTES))
            params = parse_parameters(record.payload, cap)
            if (unsupported := unsupported_parameters(params)) is not None:
                self._audit("topic.refused", record, {"reason": "result_format=JSON"})
                raise ApplianceError(unsupported)
            kind = "error"
            job = Job(
                sys_id=record.sys_id,
                topic=record.topic,
                name=record.name,
                source=record.source,
                agent=record.agent,
                agent_correlator=record.agent_correlator,
                priority=record.priority,
                parameters=params,
            )
            self._audit("probe.started", record, {"probe": probe.kind, **_aim(params)})
            # Every policy check the probe makes holds the job to the scopes of the rules it meets.
            job, ask = self._asks.prepared(job)
            scoped = self._ctx.policy.scoped(ask)
            ctx = replace(self._ctx, audit=job_audit, policy=scoped, lease=lease)
            ran = True
            result = await asyncio.wait_for(probe.run(job, ctx), self._ctx.limits.probe_timeout_s)
            answered = True
        except RateLimitedError as e:
            error = str(e)
            retry_at = _utc(e.retry_at)
            self._audit("rate.limited", record, {"reason": one_line(error, 200), "retry_at": retry_at})
        except (CredentialRejectedError, EveryCredentialRejectedError) as e:
            error, answered = str(e), True  # the target answered: it is up
        except TargetDeniedError as e:
            kind = "denied"
            error = str(e)  # already audited as target.denied by the policy check
        except TargetUnreachableError as e:
            error = str(e)
            answered = False  # counts toward the target's circuit breaker
        except ApplianceError as e:
            error = str(e)
        except TimeoutError:
            error = f"probe timed out after {self._ctx.limits.probe_timeout_s:g} s"
            answered = False if lease is not None and lease.targets else None
        except Exception as e:
            # A bug or an unexpected library error: the type only, since messages may carry data.
            log.error("job %s (%s): unexpected %s", record.sys_id, record.topic, type(e).__name__)
            error = f"internal error in the {record.topic} probe ({type(e).__name__}); see the appliance log"
        finally:
            if lease is not None:  # slots back; a target that did not answer counts toward its breaker
                lease.release(answered)
        duration_ms = int((time.monotonic() - started) * 1000)
        payload, error = results_and_error(
            result=result,
            echo_record=record.echo(),
            parameters=params,
            probe_time_ms=duration_ms,
            error=error,
        )
        self._audit(
            "probe.finished",
            record,
            {
                **_aim(params),
                # A real probe names no alias: the one the target accepted is what the auditor needs.
                **({"credential": job_audit.accepted} if job_audit.accepted else {}),
                "result_code": 1 if error else 0,
                "error": one_line(error, 200) if error else None,
                "duration_ms": duration_ms,
                "bytes_in": len(record.payload.encode("utf-8", "surrogatepass")),
                "bytes_out": len(payload.encode()),
                "result_sha256": hashlib.sha256(payload.encode()).hexdigest(),
            },
        )
        return Outcome(
            payload,
            one_line(error) if error else None,
            duration_ms,
            kind if error else "ok",
            probe.kind if probe is not None and ran else "",
        )

    def _audit(self, event: str, record: OutputRecord, extra: Mapping[str, object]) -> None:
        fields: dict[str, object] = {
            "job": record.sys_id,
            "topic": record.topic[:80],
            "target": record.source[:255],
        }
        fields.update(extra)
        self._ctx.audit.record(event, fields)

    async def aclose(self) -> None:
        for probe in set(self._probes.values()):
            await probe.aclose()


def _utc(epoch: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
