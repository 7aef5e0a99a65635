"""``STATE/status.json`` and the Prometheus textfile: written after every poll, read by ``midbox status``.

Both are replaced by a rename, so a reader never sees half a file. They are not fsync'd: they are
rewritten every poll interval, and a stale file after a power loss says no more than "not running".
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from appliance._jsonfile import read_json_object
from appliance.health import STATUS_NAME, Health, parse_iso
from appliance.limits import HEALTH_STALE_POLLS, LATENCY_BUCKETS_MS, MAX_STATUS_BYTES
from hardening.atomic import atomic_write

EXIT_HEALTHY = 0
EXIT_DEGRADED = 1
EXIT_DOWN = 3  # as an LSB init script's status for "not running"


@dataclass(frozen=True)
class Publisher:
    """Where one appliance publishes its health."""

    state_dir: Path
    metrics_textfile: Path | None = None

    def publish(self, health: Health) -> None:
        snapshot = health.snapshot()
        # 0644: the state dir (0700) keeps others out; a monitoring agent given access may read it.
        atomic_write(self.state_dir / STATUS_NAME, json.dumps(snapshot).encode(), mode=0o644, durable=False)
        if self.metrics_textfile is not None:
            atomic_write(self.metrics_textfile, render_metrics(snapshot).encode(), mode=0o644, durable=False)


@dataclass(frozen=True)
class Verdict:
    code: int
    reason: str


def read_status(state_dir: Path) -> dict[str, object] | None:
    """The last status the appliance wrote, or None when there is none (or it is not what we write)."""
    return read_json_object(state_dir / STATUS_NAME, MAX_STATUS_BYTES)


def judge(status: dict[str, object] | None, now: float) -> Verdict:
    """0 healthy; 1 degraded, with the reason; 3 not running or no successful poll within 3 intervals."""
    if status is None:
        return Verdict(EXIT_DOWN, "no status file: the appliance has not run on this state dir (--state-dir)")
    state = str(status.get("state", ""))
    if state == "stopped":
        reason = str(status.get("reason") or "")
        return Verdict(EXIT_DOWN, f"not running: stopped ({reason or 'no reason recorded'})")
    pid = status.get("pid")
    if isinstance(pid, int) and not _alive(pid):
        return Verdict(EXIT_DOWN, f"not running: process {pid} is gone without a stop line; see its log")
    interval = status.get("poll_interval_s")
    interval_s = float(interval) if isinstance(interval, (int, float)) else 5.0
    last_ok = parse_iso(status.get("last_poll_ok"))
    window = HEALTH_STALE_POLLS * interval_s
    if last_ok is None or now - last_ok > window:
        error = str(status.get("last_poll_error") or "")
        when = "never" if last_ok is None else f"{now - last_ok:.0f} s ago"
        return Verdict(
            EXIT_DOWN,
            f"no successful poll within {window:g} s (last: {when})" + (f": {error}" if error else ""),
        )
    if state not in ("running", "reloading"):
        return Verdict(
            EXIT_DEGRADED, f"state {state}" + (f": {status.get('reason')}" if status.get("reason") else "")
        )
    problems = status.get("problems")
    if isinstance(problems, list) and problems:
        return Verdict(
            EXIT_DEGRADED,
            "; ".join(str(p.get("message", p)) if isinstance(p, dict) else str(p) for p in problems),
        )
    if status.get("last_poll_error"):
        return Verdict(EXIT_DEGRADED, f"the last poll failed: {status['last_poll_error']}")
    return Verdict(EXIT_HEALTHY, "healthy")


def _alive(pid: int) -> bool:
    if os.name == "nt":
        return True  # no cheap, permission-free check; the poll age decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user (the service user, seen from an operator's shell)
    return True


# -- Prometheus text format (exposition format 0.0.4) ------------------------------------------------------


def _label(value: object) -> str:
    """A label value escaped as the text format requires: backslash, double quote, line feed."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(s: dict[str, object]) -> str:
    out: list[str] = []

    def family(
        name: str, kind: str, help_text: str, samples: list[tuple[str, dict[str, object], float]]
    ) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for suffix, labels, value in samples:
            body = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            out.append(f"{name}{suffix}{{{body}}} {_num(value)}" if body else f"{name}{suffix} {_num(value)}")

    raw_cfg = s.get("config")
    cfg: dict[str, object] | None = raw_cfg if isinstance(raw_cfg, dict) else None
    state = str(s.get("state", ""))
    family(
        "midbox_up",
        "gauge",
        "1 while the appliance runs and its last poll succeeded.",
        [("", {}, 1.0 if state == "running" and not s.get("last_poll_error") else 0.0)],
    )
    family(
        "midbox_info",
        "gauge",
        "Version, binary and config of the running appliance (always 1).",
        [
            (
                "",
                {
                    "version": s.get("version", ""),
                    "binary_sha256": s.get("binary_sha256", ""),
                    "appliance": cfg.get("appliance", "") if cfg else "",
                    "config_sha256": cfg.get("sha256", "") if cfg else "",
                    "state": state,
                },
                1.0,
            )
        ],
    )
    family(
        "midbox_state",
        "gauge",
        "1 for the state the appliance is in.",
        [
            ("", {"state": st}, 1.0 if st == state else 0.0)
            for st in ("running", "draining", "reloading", "expired", "quarantined", "stopped")
        ],
    )
    counters = s.get("counters") if isinstance(s.get("counters"), dict) else {}
    assert isinstance(counters, dict)
    family(
        "midbox_jobs_total",
        "counter",
        "Jobs by topic and outcome (claimed, ok, error, denied, refused).",
        [("", {"topic": t, "outcome": o}, float(n)) for t, by in counters.items() for o, n in by.items()],
    )
    polls = s.get("polls") if isinstance(s.get("polls"), dict) else {}
    assert isinstance(polls, dict)
    family(
        "midbox_polls_total",
        "counter",
        "Polls of the instance by result.",
        [("", {"result": r}, float(polls.get(r, 0))) for r in ("ok", "failed")],
    )
    last_ok = parse_iso(s.get("last_poll_ok"))
    family(
        "midbox_last_successful_poll_timestamp_seconds",
        "gauge",
        "When the instance last answered a poll.",
        [("", {}, last_ok or 0.0)],
    )
    family(
        "midbox_outbox_depth",
        "gauge",
        "Results kept until the instance confirms them.",
        [("", {}, float(_int(s.get("outbox_depth"))))],
    )
    family(
        "midbox_journal_depth",
        "gauge",
        "Jobs claimed and not yet finished.",
        [("", {}, float(_int(s.get("journal_depth"))))],
    )
    family(
        "midbox_audit_head_sequence",
        "gauge",
        "Entries in the audit log.",
        [("", {}, float(_int(s.get("audit_head"))))],
    )
    if cfg:
        family(
            "midbox_config_version",
            "gauge",
            "Version of the signed config in force.",
            [("", {}, float(_int(cfg.get("version"))))],
        )
        family(
            "midbox_config_expiry_timestamp_seconds",
            "gauge",
            "When the signed config expires.",
            [("", {}, parse_iso(cfg.get("expires")) or 0.0)],
        )
    cert = parse_iso(s.get("certificate_expires"))
    if cert is not None:
        family(
            "midbox_certificate_expiry_timestamp_seconds",
            "gauge",
            "When the client certificate expires.",
            [("", {}, cert)],
        )
    problems = s.get("problems") if isinstance(s.get("problems"), list) else []
    assert isinstance(problems, list)
    family(
        "midbox_problems",
        "gauge",
        "Problems an operator should act on (see midbox status).",
        [("", {}, float(len(problems)))],
    )
    latency = s.get("latency_ms") if isinstance(s.get("latency_ms"), dict) else {}
    assert isinstance(latency, dict)
    samples: list[tuple[str, dict[str, object], float]] = []
    for kind, lat in latency.items():
        buckets = lat.get("buckets", {}) if isinstance(lat, dict) else {}
        for bound in LATENCY_BUCKETS_MS:
            samples.append(
                ("_bucket", {"probe": kind, "le": _num(bound / 1000)}, float(buckets.get(str(bound), 0)))
            )
        samples.append(("_bucket", {"probe": kind, "le": "+Inf"}, float(_int(lat.get("count")))))
        samples.append(("_sum", {"probe": kind}, _int(lat.get("sum")) / 1000))
        samples.append(("_count", {"probe": kind}, float(_int(lat.get("count")))))
    family("midbox_probe_duration_seconds", "histogram", "Probe run time by probe kind.", samples)
    return "\n".join(out) + "\n"


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
