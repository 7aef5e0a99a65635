"""Rate limits, concurrency caps and the circuit breaker, through the dispatcher to real loopback
HTTP targets: a burst of 1,000 jobs to one target, a slow target, a dead one that comes back."""

from __future__ import annotations

import asyncio
import http.server
import ipaddress
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest

from appliance.dispatch import Dispatcher
from appliance.interfaces import Outcome
from appliance.limits import Limits
from appliance.probes.base import ProbeContext
from appliance.probes.http import HttpProbe
from appliance.queue.records import OutputRecord
from appliance.ratelimit import Limiter, RateSettings, RuleLimits, _Bucket
from hardening.policy import AllowRule, Policy, PortRange
from tests.helpers import _TargetServer
from tests.probes.conftest import MemCredentials, ProbeAudit, closed_port


class _Timed(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Recording

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.times.append(time.monotonic())
            self.server.inflight += 1
            self.server.peak = max(self.server.peak, self.server.inflight)
        if self.path.startswith("/sleep"):
            time.sleep(0.2)
        with self.server.lock:
            self.server.inflight -= 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


class _Recording(_TargetServer):
    request_queue_size = 1024
    times: list[float]
    lock: threading.Lock
    inflight: int
    peak: int


@contextmanager
def timed_target(port: int = 0) -> Iterator[_Recording]:
    server = _Recording(("127.0.0.1", port), _Timed)
    server.times, server.lock, server.inflight, server.peak = [], threading.Lock(), 0, 0
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def record(n: int, url: str) -> OutputRecord:
    body = f"<parameters><parameter name='url' value={quoteattr(url)}/></parameters>"
    return OutputRecord(
        sys_id=f"{n:032x}", agent="mid.server.t", topic="RESTProbe", name="http", source="127.0.0.1",
        payload=body, state="ready", agent_correlator="", priority="2", sys_created_on="",
    )  # fmt: skip


def context(tmp_path: Path, settings: RateSettings, on_breaker: object = None) -> ProbeContext:
    rule = AllowRule(
        networks=(ipaddress.ip_network("127.0.0.1/32"),), hosts=(), probes=frozenset({"http"}),
        ports=(PortRange(1, 65535),), credentials=(),
    )  # fmt: skip
    return ProbeContext(
        policy=Policy([rule]),
        credentials=MemCredentials(),
        audit=ProbeAudit(),
        limits=Limits(probe_timeout_s=120.0),
        state_dir=tmp_path,
        limiter=Limiter(settings, on_breaker=on_breaker),  # type: ignore[arg-type]
    )


def run_all(ctx: ProbeContext, records: list[OutputRecord]) -> list[Outcome]:
    async def go() -> list[Outcome]:
        dispatcher = Dispatcher({"RESTProbe": HttpProbe()}, ctx)
        try:
            return list(await asyncio.gather(*(dispatcher.handle(r) for r in records)))
        finally:
            await dispatcher.aclose()

    return asyncio.run(go())


def test_a_burst_of_1000_jobs_to_one_target_holds_the_configured_rate(tmp_path: Path) -> None:
    # 50/s: a loopback target served by threads of this same process handles about 75 jobs a second here.
    rate, burst = 50.0, 10
    settings = RateSettings(
        target_rate_per_s=rate, target_burst=burst, target_concurrency=32, max_wait_s=60.0
    )
    with timed_target() as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        outcomes = run_all(context(tmp_path, settings), [record(i, url) for i in range(1000)])
        times = sorted(server.times)
    assert [o.error for o in outcomes if o.error] == []
    assert len(times) == 1000
    # After the burst, tokens come at the configured rate: 990 of them take 990/50 = 19.8 s at least.
    achieved = (len(times) - burst) / (times[-1] - times[0])
    print(
        f"configured {rate:g}/s (burst {burst}); achieved {achieved:.1f}/s over {times[-1] - times[0]:.2f} s"
    )
    assert achieved <= rate * 1.03
    # Not throttled far below it either. Arrivals are timed at a thread-per-request server in this
    # process, which bunches them when the machine stalls: the window bound itself is checked on the
    # limiter's schedule below, where no stall can blur it.
    assert achieved >= rate * 0.5


@pytest.mark.parametrize("pattern", ["all at once", "in waves", "random"])
def test_the_token_schedule_never_lets_more_than_rate_plus_burst_through_in_any_second(pattern: str) -> None:
    """The window bound of a token bucket, on the times the limiter schedules jobs for (a fake clock)."""
    rate, burst = 50.0, 10
    rng = random.Random(7)
    arrivals = {
        "all at once": [0.0] * 1000,
        "in waves": [float(i // 200) * 5 for i in range(1000)],
        "random": sorted(rng.uniform(0, 30) for _ in range(1000)),
    }[pattern]
    bucket = _Bucket(rate, burst, 0.0)
    starts = sorted(t + bucket.reserve(t) for t in arrivals)
    assert all(s >= t for s, t in zip(starts, sorted(arrivals), strict=True))
    worst, j = 0, 0
    for i, t in enumerate(starts):
        while starts[j] < t - 1.0:
            j += 1
        worst = max(worst, i - j + 1)
    assert worst <= rate + burst + 1  # +1: both ends of a closed one-second window
    if pattern == "all at once":
        assert worst >= rate  # and it does let the rate through
        assert starts[-1] == pytest.approx((1000 - burst) / rate)


def test_a_job_that_would_wait_too_long_says_when_it_is_tried_again(tmp_path: Path) -> None:
    settings = RateSettings(target_rate_per_s=1.0, target_burst=2, max_wait_s=0.5)
    with timed_target() as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        ctx = context(tmp_path, settings)
        outcomes = run_all(ctx, [record(i, url) for i in range(5)])
    errors = [o.error for o in outcomes if o.error]
    assert len(errors) == 3 and len(server.times) == 2  # the burst of two ran; the next token is 1 s away
    assert all("rate limit of target 127.0.0.1 reached" in e and "tried again after 20" in e for e in errors)
    limited = [f for e, f in ctx.audit.events if e == "rate.limited"]  # type: ignore[attr-defined]
    assert len(limited) == 3 and all(str(f["retry_at"]).endswith("Z") for f in limited)


def test_per_rule_bucket_and_concurrency_caps(tmp_path: Path) -> None:
    settings = RateSettings(
        target_rate_per_s=1000, target_burst=1000, target_concurrency=100,
        rules={1: RuleLimits(rate_per_s=1000, burst=1000, concurrency=3)},
    )  # fmt: skip
    with timed_target() as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/sleep"
        outcomes = run_all(context(tmp_path, settings), [record(i, url) for i in range(12)])
        assert [o.error for o in outcomes if o.error] == []
        assert server.peak == 3


def test_the_breaker_opens_after_failures_and_closes_when_the_target_answers(tmp_path: Path) -> None:
    port = closed_port()
    changes: list[tuple[str, str, int]] = []
    settings = RateSettings(breaker_failures=3, breaker_cooldown_s=1.0)
    ctx = context(tmp_path, settings, on_breaker=lambda e, t, n, at: changes.append((e, t, n)))
    url = f"http://127.0.0.1:{port}/"
    failed = [run_all(ctx, [record(i, url)])[0] for i in range(3)]
    assert all(o.error and "circuit breaker" not in o.error for o in failed)
    assert changes == [("breaker.opened", f"127.0.0.1:{port}", 3)]
    started = time.monotonic()
    [refused] = run_all(ctx, [record(9, url)])
    assert (
        refused.error
        and "target 127.0.0.1:" in refused.error
        and "failed 3 times in a row" in refused.error
        and "tried again after" in refused.error
    )
    assert time.monotonic() - started < 0.5  # refused at once, no connection tried
    time.sleep(1.1)
    with timed_target(port) as server:
        [ok] = run_all(ctx, [record(10, url)])
        assert ok.error is None and len(server.times) == 1
    assert changes[-1] == ("breaker.closed", f"127.0.0.1:{port}", 3)


def test_after_the_pause_a_failing_target_is_paused_longer(tmp_path: Path) -> None:
    changes: list[float] = []
    settings = RateSettings(breaker_failures=1, breaker_cooldown_s=1.0)
    clock = [1000.0]
    limiter = Limiter(
        settings,
        clock=lambda: clock[0],
        wall=lambda: clock[0],
        on_breaker=lambda e, t, n, at: changes.append(at),
    )
    limiter.record("10.0.0.1", ok=False)
    with pytest.raises(Exception, match="tried again after"):
        limiter.breaker_check("10.0.0.1")
    clock[0] += 1.0
    limiter.breaker_check("10.0.0.1")  # the one job let through
    with pytest.raises(Exception, match="circuit breaker"):
        limiter.breaker_check("10.0.0.1")  # the others still wait while it runs
    limiter.record("10.0.0.1", ok=False)
    assert changes == [1001.0, 1003.0]  # the pause doubled: 1 s, then 2 s
