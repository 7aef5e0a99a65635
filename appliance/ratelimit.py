"""Rate limits, concurrency caps and circuit breakers, per target and per rule (docs/policy.md).

Fragile SNMP agents and BMCs fall over under bursts, so every job that reaches a target first takes:

1. the target's circuit breaker: after ``breaker_failures`` failures in a row (no answer, a timeout, a
   refused connection) the target is left alone for ``breaker_cooldown_s`` (doubling on each failed
   retry up to ``MAX_BREAKER_COOLDOWN_S``); jobs meanwhile get an error saying when it is tried again;
   after the pause one job goes through, and its success closes the breaker;
2. a token from the target's bucket and one from the rule's (rate and burst);
3. a concurrency slot of the target and one of the rule.

Tokens and slots are waited for up to ``max_wait_s``; a job that would wait longer gets an error
saying when the next token frees up, so a burst cannot pile up behind a slow device.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from appliance.errors import ProbeError

MAX_BREAKER_COOLDOWN_S = 900.0
MAX_RATE_KEYS = 65_536  # buckets and breakers kept; the idlest go first


class RateLimitedError(ProbeError):
    """The job was not run now: a bucket, a cap or an open breaker. ``retry_at`` is epoch seconds."""

    def __init__(self, message: str, retry_at: float) -> None:
        super().__init__(message)
        self.retry_at = retry_at


@dataclass(frozen=True)
class RuleLimits:
    rate_per_s: float = 50.0
    burst: int = 100
    concurrency: int = 32


@dataclass(frozen=True)
class RateSettings:
    """Safe for small devices: a target sees at most 10 new jobs a second after a burst of 20, and 4 at
    a time (under sshd's MaxStartups of 10; one snmpd overflowed its buffer at 400 in flight); five
    failures in a row leave it alone for a minute."""

    target_rate_per_s: float = 10.0
    target_burst: int = 20
    target_concurrency: int = 4
    max_wait_s: float = 30.0
    breaker_failures: int = 5
    breaker_cooldown_s: float = 60.0
    rules: Mapping[int, RuleLimits] = field(default_factory=dict)  # rule number -> its limits

    def rule(self, number: int) -> RuleLimits:
        return self.rules.get(number, RuleLimits())


class _Bucket:
    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, float(burst), now

    def reserve(self, now: float) -> float:
        """Take a token (perhaps one not there yet); return how long to wait for it."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def cancel(self) -> None:
        self.tokens += 1


class _Slots:
    def __init__(self, cap: int) -> None:
        self.cap, self.used = cap, 0
        self.freed = asyncio.Event()


@dataclass
class _Breaker:
    failures: int = 0
    open_until: float = 0.0
    cooldown: float = 0.0
    probing: bool = False  # the one job let through after the pause is running


class Limiter:
    """One per runner; shared by every job (the dispatcher gives each job a ``Lease``)."""

    def __init__(
        self,
        settings: RateSettings,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        on_breaker: Callable[[str, str, int, float], None] | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._wall = wall
        self._buckets: dict[tuple[str, object], _Bucket] = {}
        self._slots: dict[tuple[str, object], _Slots] = {}
        self._breakers: dict[str, _Breaker] = {}
        self._on_breaker = on_breaker  # (event, target, failures, retry_at)

    def lease(self) -> Lease:
        return Lease(self)

    def _bucket(self, key: tuple[str, object], rate: float, burst: int) -> _Bucket:
        bucket = self._buckets.pop(key, None) or _Bucket(rate, burst, self._clock())
        self._buckets[key] = bucket  # most recently used last
        if len(self._buckets) > MAX_RATE_KEYS:
            del self._buckets[next(iter(self._buckets))]
        return bucket

    def _slot(self, key: tuple[str, object], cap: int) -> _Slots:
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = _Slots(cap)
        return slots

    def _retry_text(self, delay: float) -> tuple[str, float]:
        at = self._wall() + delay
        return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), at

    def breaker_check(self, target: str) -> None:
        b = self._breakers.get(target)
        if b is None or b.failures < self.settings.breaker_failures:
            return
        now = self._clock()
        if now < b.open_until or b.probing:
            wait = max(b.open_until - now, 1.0)
            text, at = self._retry_text(wait)
            raise RateLimitedError(
                f"target {target} failed {b.failures} times in a row, so it is left alone (circuit breaker); "
                f"it is tried again after {text}; check the device, or wait",
                at,
            )
        b.probing = True  # the pause is over: this job tries the target, the others still wait

    def unprobe(self, target: str) -> None:
        b = self._breakers.get(target)
        if b is not None:
            b.probing = False

    def record(self, target: str, ok: bool) -> None:
        b = self._breakers.setdefault(target, _Breaker())
        if len(self._breakers) > MAX_RATE_KEYS:
            del self._breakers[next(iter(self._breakers))]
        s = self.settings
        was_open = b.failures >= s.breaker_failures
        b.probing = False
        if ok:
            if was_open and self._on_breaker:
                self._on_breaker("breaker.closed", target, b.failures, 0.0)
            b.failures, b.cooldown, b.open_until = 0, 0.0, 0.0
            return
        b.failures += 1
        if b.failures >= s.breaker_failures:
            b.cooldown = min(MAX_BREAKER_COOLDOWN_S, b.cooldown * 2 if was_open else s.breaker_cooldown_s)
            b.open_until = self._clock() + b.cooldown
            if self._on_breaker:
                self._on_breaker("breaker.opened", target, b.failures, self._wall() + b.cooldown)


class Lease:
    """The tokens and slots one job holds; ``release`` gives the slots back when the job ends."""

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter
        self._held: list[_Slots] = []
        self.targets: list[str] = []

    async def acquire(self, address: str, port: int, rule: int | None) -> None:
        """Buckets and caps are the address's (one device, whatever it serves); the breaker is the
        service's (address and port): a dead web UI must not stop SNMP to the same switch."""
        service = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        if service in self.targets:
            return  # a redirect back to a target this job already holds
        lim = self._limiter
        lim.breaker_check(service)
        try:
            await self._acquire(address, rule)
        except BaseException:
            lim.unprobe(service)  # the job let through after a pause never reached the target
            raise
        self.targets.append(service)

    async def _acquire(self, target: str, rule: int | None) -> None:
        lim, s = self._limiter, self._limiter.settings
        keys: list[tuple[tuple[str, object], float, int, int]] = [
            (("target", target), s.target_rate_per_s, s.target_burst, s.target_concurrency)
        ]
        if rule is not None:
            r = s.rule(rule)
            keys.append((("rule", rule), r.rate_per_s, r.burst, r.concurrency))
        now = lim._clock()
        taken: list[_Bucket] = []
        wait, which = 0.0, ""
        for key, rate, burst, _ in keys:
            bucket = lim._bucket(key, rate, burst)
            taken.append(bucket)
            delay = bucket.reserve(now)
            if delay > wait:
                wait, which = delay, f"{key[0]} {key[1]}"
        if wait > s.max_wait_s:
            for bucket in taken:
                bucket.cancel()
            text, at = lim._retry_text(wait)
            raise RateLimitedError(
                f"rate limit of {which} reached (its next token is {wait:.1f} s away); it is tried again "
                f"after {text}: send fewer jobs at once, or raise the rate in the signed config",
                at,
            )
        if wait:
            await asyncio.sleep(wait)
        deadline = lim._clock() + s.max_wait_s
        for key, _, _, cap in keys:
            await self._take_slot(lim._slot(key, cap), deadline, key)

    async def _take_slot(self, slots: _Slots, deadline: float, key: tuple[str, object]) -> None:
        lim = self._limiter
        while slots.used >= slots.cap:
            left = deadline - lim._clock()
            if left <= 0:
                text, at = lim._retry_text(1.0)
                raise RateLimitedError(
                    f"{key[0]} {key[1]} already has {slots.cap} job(s) running (concurrency cap); "
                    f"it is tried again after {text}",
                    at,
                )
            slots.freed.clear()
            try:
                await asyncio.wait_for(slots.freed.wait(), left)
            except TimeoutError:
                continue
        slots.used += 1
        self._held.append(slots)

    def release(self, ok: bool | None) -> None:
        """Give the slots back; ``ok`` is whether the targets answered (None: not theirs to judge)."""
        for slots in self._held:
            slots.used -= 1
            slots.freed.set()
        self._held.clear()
        for target in self.targets:
            if ok is None:
                self._limiter.unprobe(target)
            else:
                self._limiter.record(target, ok)
