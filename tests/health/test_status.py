"""Local health without a socket: STATE/status.json after every poll, 'midbox status', the metrics textfile."""

from __future__ import annotations

import datetime as dt
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.health import STATUS_NAME, ConfigFacts, Health
from appliance.limits import HEALTH_DENIALS, LATENCY_BUCKETS_MS
from appliance.status_file import Publisher, judge, read_status, render_metrics
from tests.helpers import Pki, dev_instance, http_target
from tests.signing.helpers import install_trust
from tests.support import promtext
from tests.support.cli import child_env, run_process
from tests.support.running import ROOT, config_bytes, http_job, signed_config, wait_answer

NOW = 1_800_000_000.0


def facts(expires_in_days: float = 30) -> ConfigFacts:
    expires = dt.datetime.fromtimestamp(NOW, dt.UTC) + dt.timedelta(days=expires_in_days)
    return ConfigFacts(7, "ab" * 32, ("alice", "bob"), expires, "edge-01", 5.0)


def health(clock: list[float], **kwargs: float) -> Health:
    h = Health(
        version="1.2.3", binary_sha256="cd" * 32, known_topics={"SNMP", "RESTProbe"}, clock=lambda: clock[0]
    )
    h.config = facts(**kwargs)
    return h


def test_a_fresh_successful_poll_is_healthy_and_staleness_is_down() -> None:
    clock = [NOW]
    h = health(clock)
    assert judge(h.snapshot(), NOW).code == 3  # never polled
    h.poll_ok()
    assert judge(h.snapshot(), NOW + 1) == judge(h.snapshot(), NOW + 14.9)
    assert judge(h.snapshot(), NOW + 1).code == 0
    stale = judge(h.snapshot(), NOW + 15.1)  # 3 intervals of 5 s
    assert stale.code == 3 and "no successful poll within 15 s" in stale.reason


def test_degraded_names_the_reason_and_stopped_is_down() -> None:
    clock = [NOW]
    h = health(clock, expires_in_days=3)
    h.poll_ok()
    verdict = judge(h.snapshot(), NOW)
    assert verdict.code == 1 and "expires" in verdict.reason and "sign a new one" in verdict.reason
    h.state, h.reason = "stopped", "signal"
    verdict = judge(h.snapshot(), NOW)
    assert verdict.code == 3 and "stopped (signal)" in verdict.reason
    assert judge(None, NOW).code == 3


def test_a_failed_last_poll_or_a_gone_process_is_reported() -> None:
    clock = [NOW]
    h = health(clock)
    h.poll_ok()
    h.poll_failed("the instance answered 503")
    assert judge(h.snapshot(), NOW).code == 1
    snap = h.snapshot()
    snap["pid"] = 2**22 + 12345  # above any pid_max: no such process
    assert judge(snap, NOW).code == 3


def test_repeated_denials_and_a_backlog_are_problems() -> None:
    clock = [NOW]
    h = health(clock)
    for _ in range(HEALTH_DENIALS - 1):
        h.count("SNMP", "denied")
    assert not h.problems()
    h.count("SNMP", "denied")
    h.outbox_depth = 500
    assert {p.key for p in h.problems()} == {"repeated_denials", "outbox_backlog"}
    clock[0] += 7200  # the denials are old now
    assert {p.key for p in h.problems()} == {"outbox_backlog"}


def test_metrics_follow_the_text_format_with_hostile_topics_bounded_and_escaped() -> None:
    clock = [NOW]
    h = health(clock)
    h.poll_ok()
    h.count('evil"topic\\\n{x="1"}', "claimed")  # chosen by the instance: folded into "other"
    for ms in (5, 60, 60, 900, 70_000):
        h.count("SNMP", "claimed")
        h.finished("SNMP", "ok", "snmp", ms)
    h.finished("RESTProbe", "denied", "", 0)
    snap = h.snapshot()
    cfg = snap["config"]
    assert isinstance(cfg, dict)
    cfg["appliance"] = 'a"b\\c\nd'  # escaping of a label value, whatever it holds
    families = promtext.parse(render_metrics(snap))
    jobs = {(s[1]["topic"], s[1]["outcome"]): s[2] for s in families["midbox_jobs_total"].samples}
    assert (
        jobs[("other", "claimed")] == 1 and jobs[("SNMP", "ok")] == 5 and jobs[("RESTProbe", "denied")] == 1
    )
    assert families["midbox_jobs_total"].type == "counter"
    [info] = families["midbox_info"].samples
    assert info[1]["appliance"] == 'a"b\\c\nd'
    hist = families["midbox_probe_duration_seconds"]
    assert hist.type == "histogram"
    buckets = {s[1]["le"]: s[2] for s in hist.samples if s[0].endswith("_bucket")}
    assert buckets["0.01"] == 1 and buckets["0.1"] == 3 and buckets["1"] == 4 and buckets["+Inf"] == 5
    assert len(buckets) == len(LATENCY_BUCKETS_MS) + 1
    assert families["midbox_up"].samples[0][2] == 1


def test_the_strict_reader_refuses_what_the_format_forbids() -> None:
    for bad in (
        "m 1",  # no final line feed
        'm{a="\\x"} 1\n',  # an escape the format does not define
        "# TYPE m counter\n# TYPE m gauge\nm 1\n",
        "m 1\nn 2\nm 3\n",  # not grouped
        '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\nh_sum 0\n',
    ):
        with pytest.raises(promtext.FormatError):
            promtext.parse(bad)


def test_status_and_metrics_are_rewritten_on_every_poll(tmp_path: Path) -> None:
    # The cost per poll is printed, not asserted (a shared machine is noisy): tests/bench measures it.
    clock = [NOW]
    h = health(clock)
    for topic in ("SNMP", "RESTProbe"):
        for outcome in ("claimed", "ok", "error", "denied", "refused"):
            h.count(topic, outcome)
        h.finished(topic, "ok", topic.lower(), 120)
    publisher = Publisher(tmp_path, tmp_path / "midbox.prom")
    times = []
    for _ in range(300):
        started = time.perf_counter()
        h.poll_ok()
        publisher.publish(h)
        times.append(time.perf_counter() - started)
    median_ms = statistics.median(times) * 1000
    print(
        f"status.json + metrics textfile per poll: median {median_ms:.3f} ms, p95 "
        f"{sorted(times)[int(len(times) * 0.95)] * 1000:.3f} ms"
    )
    assert read_status(tmp_path)["polls"] == {"ok": 300, "failed": 0}  # type: ignore[index]


def test_run_writes_status_and_metrics_and_midbox_status_reads_them(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    admin_key = Ed25519PrivateKey.generate()
    install_trust(state_dir, [admin_key])
    prom = tmp_path / "textfile" / "midbox.prom"
    prom.parent.mkdir()
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        config = signed_config(
            tmp_path / "admin", [admin_key], config_bytes(instance.url, dev_pki, 1, '"1-65535"')
        )
        argv = [
            sys.executable,
            "-m",
            "appliance",
            "run",
            "--config",
            str(config),
            "--state-dir",
            str(state_dir),
            "--metrics-textfile",
            str(prom),
        ]
        with (tmp_path / "run.log").open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=child_env())
        try:
            wait_answer(store, http_job(store, f"{target}/hello"))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                snap = read_status(state_dir)
                if snap and snap.get("counters", {}).get("RESTProbe", {}).get("ok"):  # type: ignore[union-attr]
                    break
                time.sleep(0.05)
            ok = run_process("status", "--state-dir", str(state_dir))
            assert ok.returncode == 0, ok.stdout + ok.stderr
            assert "healthy" in ok.stdout and "edge-01" in ok.stdout
            as_json = json.loads(run_process("status", "--json", "--state-dir", str(state_dir)).stdout)
            status = as_json["status"]
            assert as_json["exit"] == 0 and status["state"] == "running"
            assert status["counters"]["RESTProbe"] == {"claimed": 1, "ok": 1}
            assert status["config"]["version"] == 1 and len(status["config"]["sha256"]) == 64
            assert status["certificate_expires"] and status["audit_head"] > 0
            assert (state_dir / STATUS_NAME).stat().st_mode & 0o777 == 0o644
            families = promtext.parse(prom.read_text())
            assert families["midbox_config_version"].samples[0][2] == 1
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    down = run_process("status", "--state-dir", str(state_dir))
    assert down.returncode == 3 and "stopped (signal)" in down.stdout, down.stdout
    assert promtext.parse(prom.read_text())["midbox_state"].samples
    missing = run_process("status", "--state-dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 3 and "no status file" in missing.stdout
