"""Rate, concurrency, breaker and replay keys: ``[appliance]`` defaults per target, ``[[allow]]`` per rule."""

from __future__ import annotations

from typing import Protocol, TypeVar

from appliance.errors import ConfigError
from appliance.ratelimit import RateSettings, RuleLimits

T = TypeVar("T")
MAX_RATE_PER_S = 10_000.0
MAX_BURST = 100_000
MAX_CONCURRENCY = 1024
MAX_JOB_AGE_S = 7 * 86_400.0


class _Keys(Protocol):
    def take(self, key: str, kind: type[T], default: T | None = None, required: bool = True) -> T: ...
    def name(self, key: str) -> str: ...


def _number(t: _Keys, key: str, default: float, low: float, high: float) -> float:
    value = t.take(key, float, default=default)
    if not low <= value <= high:
        raise ConfigError(f"config: {t.name(key)} must be between {low:g} and {high:g}")
    return value


def _int(t: _Keys, key: str, default: int, low: int, high: int) -> int:
    value = t.take(key, int, default=default)
    if not low <= value <= high:
        raise ConfigError(f"config: {t.name(key)} must be between {low} and {high}")
    return value


def appliance_rates(t: _Keys) -> tuple[RateSettings, float]:
    """The per-target defaults and the breaker (``[appliance]``), and ``max_job_age_s``."""
    d = RateSettings()
    rates = RateSettings(
        target_rate_per_s=_number(t, "target_rate_per_s", d.target_rate_per_s, 0.01, MAX_RATE_PER_S),
        target_burst=_int(t, "target_burst", d.target_burst, 1, MAX_BURST),
        target_concurrency=_int(t, "target_concurrency", d.target_concurrency, 1, MAX_CONCURRENCY),
        breaker_failures=_int(t, "breaker_failures", d.breaker_failures, 1, 1000),
        breaker_cooldown_s=_number(t, "breaker_cooldown_s", d.breaker_cooldown_s, 1, 900),
    )
    return rates, _number(t, "max_job_age_s", 86_400.0, 60, MAX_JOB_AGE_S)


def rule_limits(t: _Keys) -> RuleLimits:
    d = RuleLimits()
    return RuleLimits(
        rate_per_s=_number(t, "rate_per_s", d.rate_per_s, 0.01, MAX_RATE_PER_S),
        burst=_int(t, "burst", d.burst, 1, MAX_BURST),
        concurrency=_int(t, "max_concurrent", d.concurrency, 1, MAX_CONCURRENCY),
    )
