"""What a running appliance knows about its own health, kept in memory and published after every poll.

``STATE/status.json`` is the local view (``midbox status`` reads it, monitoring may too); the same
snapshot can be rendered for node_exporter's textfile collector (appliance/status_file.py), and a summary of
it goes into every HeartbeatProbe answer. Nothing here opens a socket.

One ``Health`` lives for the whole process: it survives runner restarts on a reloaded config, so the
counters are the process's, as Prometheus expects of a counter.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from appliance.limits import (
    HEALTH_DENIAL_WINDOW_S,
    HEALTH_DENIALS,
    HEALTH_EXPIRY_WARNING_S,
    HEALTH_OUTBOX_BACKLOG,
    LATENCY_BUCKETS_MS,
)

STATUS_NAME = "status.json"
OUTCOMES = ("claimed", "ok", "error", "denied", "refused")
STATES = ("starting", "running", "draining", "reloading", "expired", "quarantined", "stopped")
OTHER_TOPIC = "other"  # topics the appliance has no name for: the instance chooses them, so they are bounded


@dataclass(frozen=True)
class ConfigFacts:
    """The facts of the config in force that monitoring and the instance are shown."""

    version: int
    sha256: str
    signers: tuple[str, ...]
    expires: dt.datetime
    appliance: str
    poll_interval_s: float


@dataclass(frozen=True)
class Problem:
    """Something an operator should act on; ``key`` names it stably (one open issue per key)."""

    key: str
    message: str


@dataclass
class _Latency:
    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS_MS))
    total_ms: int = 0
    count: int = 0


class Health:
    """Counters, gauges and state of this process. Only the event loop's thread touches it."""

    def __init__(
        self,
        *,
        version: str,
        binary_sha256: str,
        known_topics: Iterable[str] = (),
        audit_head: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.version = version
        self.binary_sha256 = binary_sha256
        self._known = frozenset(known_topics)
        self._audit_head = audit_head
        self._clock = clock
        self.started = clock()
        self.state = "starting"
        self.reason = ""  # why the appliance stopped, or what it is waiting for
        self.config: ConfigFacts | None = None
        self.cert_expires: dt.datetime | None = None
        self.counters: dict[tuple[str, str], int] = {}
        self.latency: dict[str, _Latency] = {}
        self.polls_ok = 0
        self.polls_failed = 0
        self.last_poll_ok: float | None = None
        self.last_poll_error = ""
        self.outbox_depth = 0
        self.journal_depth = 0
        self.audit_failed = ""
        self._denials: deque[float] = deque(maxlen=HEALTH_DENIALS)

    def know_topics(self, topics: Iterable[str]) -> None:
        self._known = self._known | frozenset(topics)

    def _topic(self, topic: str) -> str:
        return topic if topic in self._known else OTHER_TOPIC

    def count(self, topic: str, outcome: str) -> None:
        key = (self._topic(topic), outcome)
        self.counters[key] = self.counters.get(key, 0) + 1
        if outcome == "denied":
            self._denials.append(self._clock())

    def finished(self, topic: str, outcome: str, probe: str, duration_ms: int) -> None:
        self.count(topic, outcome)
        if probe:
            lat = self.latency.setdefault(probe, _Latency())
            for i, bound in enumerate(LATENCY_BUCKETS_MS):
                if duration_ms <= bound:
                    lat.buckets[i] += 1
            lat.total_ms += duration_ms
            lat.count += 1

    def poll_ok(self) -> None:
        self.polls_ok += 1
        self.last_poll_ok = self._clock()
        self.last_poll_error = ""
        if self.state in ("starting", "reloading"):
            self.state = "running"

    def poll_failed(self, reason: str) -> None:
        self.polls_failed += 1
        self.last_poll_error = reason[:300]

    def problems(self) -> list[Problem]:
        """What the instance is told as ``ecc_agent_issue`` records and ``midbox status`` as degraded."""
        now = self._clock()
        found: list[Problem] = []
        soon = dt.datetime.fromtimestamp(now + HEALTH_EXPIRY_WARNING_S, dt.UTC)
        if self.config is not None and self.config.expires <= soon:
            found.append(
                Problem(
                    "config_expiring",
                    f"the signed config (version {self.config.version}) expires "
                    f"{_iso(self.config.expires)}: have the admins sign a new one",
                )
            )
        if self.cert_expires is not None and self.cert_expires <= soon:
            found.append(
                Problem(
                    "certificate_expiring",
                    f"the client certificate expires {_iso(self.cert_expires)}: "
                    "renew it with 'midbox enroll'",
                )
            )
        if self.outbox_depth >= HEALTH_OUTBOX_BACKLOG:
            found.append(
                Problem(
                    "outbox_backlog",
                    f"{self.outbox_depth} results wait to be sent to the instance: check the instance "
                    "can be reached and accepts inserts",
                )
            )
        if len(self._denials) >= HEALTH_DENIALS and now - self._denials[0] <= HEALTH_DENIAL_WINDOW_S:
            found.append(
                Problem(
                    "repeated_denials",
                    f"{HEALTH_DENIALS} or more jobs were denied by the allowlist within "
                    f"{HEALTH_DENIAL_WINDOW_S // 60} minutes: align the MID's IP ranges on the instance "
                    "with the signed config ('midbox policy explain')",
                )
            )
        if self.audit_failed:
            found.append(
                Problem("audit_write_failure", f"the audit log cannot be written: {self.audit_failed[:200]}")
            )
        return found

    def snapshot(self) -> dict[str, object]:
        """Everything ``status.json`` holds: plain JSON types, no secret (names, digests, numbers)."""
        counters: dict[str, dict[str, int]] = {}
        for (topic, outcome), n in sorted(self.counters.items()):
            counters.setdefault(topic, {})[outcome] = n
        cfg = self.config
        return {
            "pid": os.getpid(),
            "written_at": _iso_ts(self._clock()),
            "state": self.state,
            "reason": self.reason,
            "version": self.version,
            "binary_sha256": self.binary_sha256,
            "started": _iso_ts(self.started),
            "poll_interval_s": cfg.poll_interval_s if cfg else None,
            "last_poll_ok": _iso_ts(self.last_poll_ok) if self.last_poll_ok is not None else None,
            "last_poll_error": self.last_poll_error,
            "polls": {"ok": self.polls_ok, "failed": self.polls_failed},
            "counters": counters,
            "latency_ms": {
                kind: {
                    "buckets": dict(zip((str(b) for b in LATENCY_BUCKETS_MS), lat.buckets, strict=True)),
                    "sum": lat.total_ms,
                    "count": lat.count,
                }
                for kind, lat in sorted(self.latency.items())
            },
            "outbox_depth": self.outbox_depth,
            "journal_depth": self.journal_depth,
            "config": None
            if cfg is None
            else {
                "appliance": cfg.appliance,
                "version": cfg.version,
                "sha256": cfg.sha256,
                "signers": list(cfg.signers),
                "expires": _iso(cfg.expires),
            },
            "certificate_expires": _iso(self.cert_expires) if self.cert_expires else None,
            "audit_head": self._audit_head() if self._audit_head else None,
            "problems": [{"key": p.key, "message": p.message} for p in self.problems()],
        }

    def summary(self) -> dict[str, str]:
        """The flat form a HeartbeatProbe answer carries (element name -> text)."""
        cfg = self.config
        ok = sum(n for (_, o), n in self.counters.items() if o == "ok")
        failed = sum(n for (_, o), n in self.counters.items() if o in ("error", "denied", "refused"))
        out = {
            "midbox_state": self.state,
            "binary_sha256": self.binary_sha256,
            "jobs_ok": str(ok),
            "jobs_failed": str(failed),
            "polls_failed": str(self.polls_failed),
            "problems": ",".join(p.key for p in self.problems()),
        }
        if cfg is not None:
            out.update(
                config_version=str(cfg.version),
                config_sha256=cfg.sha256,
                config_signers=",".join(cfg.signers),
                config_expires=_iso(cfg.expires),
            )
        if self.cert_expires is not None:
            out["certificate_expires"] = _iso(self.cert_expires)
        return out


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_ts(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: object) -> float | None:
    """Seconds since the epoch of a time this module wrote, or None."""
    if not isinstance(text, str):
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC).timestamp()
        except ValueError:
            continue
    return None


def cert_not_after(path: Path | None) -> dt.datetime | None:
    """The leaf's expiry of a PEM certificate file, or None when there is none to read."""
    if path is None:
        return None
    from cryptography import x509

    from hardening.identity import MAX_CERT_FILE_BYTES
    from hardening.smallfile import read_capped

    try:
        pem = read_capped(path, MAX_CERT_FILE_BYTES)[:MAX_CERT_FILE_BYTES]
        leaf = x509.load_pem_x509_certificates(pem)[0]
    except (OSError, ValueError, IndexError):
        return None
    return leaf.not_valid_after_utc
