"""Expiry while running: the signed config, the client certificate and the instance CA file.

A running appliance re-checks each of them at start and on a timer. Seven days and one day before
one lapses it warns (log and audit, once per threshold); once one has lapsed it holds: no new work is
claimed, heartbeats are answered with the reason, results already kept are still delivered. A newly
signed config or a renewed certificate clears the hold without a restart.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from appliance.config.model import Config
from appliance.interfaces import AuditSink
from hardening.smallfile import read_capped
from hardening.utctime import format_time

log = logging.getLogger(__name__)

WARN_BEFORE = (dt.timedelta(days=7), dt.timedelta(days=1))  # widest first
CHECK_INTERVAL_S = 60.0


@dataclass(frozen=True)
class Deadline:
    what: str  # "config", "client certificate", "instance CA"
    source: Path
    expires: dt.datetime
    fix: str  # the one command or step that renews it


def deadlines(config: Config) -> list[Deadline]:
    """When each thing the running appliance depends on lapses. A certificate file that cannot be
    read right now is left out: the next TLS connection reports it, and the next check looks again."""
    found = [
        Deadline(
            "config",
            config.settings.source,
            config.settings.expires,
            "sign a new config with a later 'expires' and put it in place (no restart needed)",
        )
    ]
    cert = config.instance.client_cert
    if cert is not None:
        after = _not_after(cert, latest=False)
        if after is not None:
            fix = "renew it ('midbox enroll --renew', then 'midbox enroll --install'; no restart needed)"
            found.append(Deadline("client certificate", cert, after, fix))
    # The CA file stops working when its last certificate lapses; a bundle may hold old ones too.
    after = _not_after(config.instance.ca_file, latest=True)
    if after is not None:
        found.append(
            Deadline("instance CA", config.instance.ca_file, after, "put the instance's renewed CA in place")
        )
    return found


def _not_after(path: Path, *, latest: bool) -> dt.datetime | None:
    from cryptography import x509

    from hardening.identity import MAX_CA_FILE_BYTES

    try:
        certs = x509.load_pem_x509_certificates(read_capped(path, MAX_CA_FILE_BYTES)[:MAX_CA_FILE_BYTES])
    except (OSError, ValueError):
        return None
    if not certs:
        return None
    ends = [c.not_valid_after_utc for c in certs]
    # The client file's first certificate is the leaf; intermediates lapse no earlier in practice.
    return max(ends) if latest else certs[0].not_valid_after_utc


def _left(delta: dt.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} hours" if hours < 48 else f"{hours / 24:.0f} days"


class ValidityWatch:
    """Warns once per threshold and says why work is held; one per running appliance."""

    def __init__(self, audit: AuditSink) -> None:
        self._audit = audit
        self._warned: set[tuple[str, str, int]] = set()  # (what, expires, threshold index)
        self._expired: set[tuple[str, str]] = set()
        self._hold: str | None = None

    @property
    def hold(self) -> str | None:
        """Why no new work is claimed, or None."""
        return self._hold

    def check(self, config: Config, now: dt.datetime) -> str | None:
        """Look at every deadline now; warn, hold or release; return the hold reason."""
        lapsed: list[Deadline] = []
        for d in deadlines(config):
            left = d.expires - now
            if left <= dt.timedelta(0):
                lapsed.append(d)
                self._report_expired(d)
            else:
                self._maybe_warn(d, left)
        reason = _reason(lapsed)
        if reason is None and self._hold is not None:
            log.warning("claiming work again: nothing this appliance depends on has expired")
            self._audit.record("validity.resumed", {"config_version": config.version})
            self._expired.clear()
        self._hold = reason
        return reason

    def next_check_s(self, config: Config, now: dt.datetime, interval_s: float) -> float:
        """Seconds until the next check: the interval, or sooner when a deadline or threshold falls."""
        soonest = interval_s
        for d in deadlines(config):
            for moment in (d.expires, *(d.expires - w for w in WARN_BEFORE)):
                left = (moment - now).total_seconds()
                if left > 0:
                    soonest = min(soonest, left + 0.05)  # just past it, so the check sees it lapsed
        return max(soonest, 0.05)

    def _maybe_warn(self, d: Deadline, left: dt.timedelta) -> None:
        crossed = [i for i, w in enumerate(WARN_BEFORE) if left <= w]
        if not crossed:
            return
        tightest = crossed[-1]
        key = (d.what, format_time(d.expires), tightest)
        if any((d.what, key[1], i) in self._warned for i in range(tightest, len(WARN_BEFORE))):
            return
        self._warned.add(key)
        log.warning(
            "the %s %s expires in %s (%s); %s",
            d.what,
            d.source,
            _left(left),
            format_time(d.expires),
            d.fix,
        )
        self._audit.record(
            "validity.warning",
            {
                "what": d.what,
                "source": str(d.source),
                "expires": format_time(d.expires),
                "days_left": round(left.total_seconds() / 86400, 2),
            },
        )

    def _report_expired(self, d: Deadline) -> None:
        key = (d.what, format_time(d.expires))
        if key in self._expired:
            return
        self._expired.add(key)
        log.error(
            "the %s %s expired at %s: no new work is claimed until it is renewed; %s",
            d.what,
            d.source,
            format_time(d.expires),
            d.fix,
        )
        self._audit.record(
            "validity.expired", {"what": d.what, "source": str(d.source), "expires": format_time(d.expires)}
        )


def _reason(lapsed: Sequence[Deadline]) -> str | None:
    if not lapsed:
        return None
    return "; ".join(f"the {d.what} expired at {format_time(d.expires)}: {d.fix}" for d in lapsed)


def tls_fingerprint(config: Config) -> tuple[tuple[int, int], ...]:
    """(mtime_ns, size) of the client certificate, its key and the CA file: a renewal changes them."""
    out: list[tuple[int, int]] = []
    for path in (config.instance.client_cert, config.instance.client_key, config.instance.ca_file):
        try:
            st = os.stat(path) if path is not None else None
        except OSError:
            st = None
        out.append((st.st_mtime_ns, st.st_size) if st is not None else (0, -1))
    return tuple(out)


def tls_usable(config: Config, key_password: bytes | None) -> bool:
    """The changed files load and name this appliance; otherwise the running runner keeps the old ones."""
    from hardening.errors import HardeningError
    from hardening.tls import client_context

    try:
        client_context(
            ca_file=config.instance.ca_file,
            client_cert=config.instance.client_cert,
            client_key=config.instance.client_key,
            use_system_trust=config.instance.use_system_trust,
            name=config.appliance.name,
            key_password=key_password,
        )
    except HardeningError as e:
        log.warning("a certificate or CA file changed but cannot be used yet, keeping the old one: %s", e)
        return False
    return True
