"""The events the appliance writes to its audit log, with the fields each one must carry.

Every entry is one JSON line ``{"seq":N,"time":"...Z","prev":HEX,"event":NAME,"fields":{...}}``.
Field values are JSON-safe (str, int, finite float, bool, None, lists and str-keyed objects of those);
datetimes, paths, enums and IP addresses are converted; bytes and other objects are refused, and so is
any field named like a secret (see ``FORBIDDEN_FIELD_NAMES``): record an alias or a SHA-256, never the
thing itself. Extra fields beyond the required ones are allowed.

Vocabulary (``job`` is the ECC output's sys_id, ``target`` the host as named by the job, ``credential``
the alias, never the secret):

- ``appliance.start``   binary_sha256, version, config_version, appliance     (pid, client_cert_sha256
                        optional)
- ``appliance.stop``    config_version, reason                                (uptime_s optional)
- ``config.accepted``   config_version, config_sha256, signers (key ids), expires
- ``config.refused``    config_sha256, reason                                 (config_version if parsed)
- ``credential.used``   alias, type, job, target, topic
- ``credential.attempt`` job, topic, probe, target, address, alias, outcome (``accepted``, ``rejected`` by
                        the target, ``error`` for anything else), via (``job``, ``id``, ``tag``, ``rule``);
                        reason optional
- ``job.claimed``       job, topic, target                                    (priority optional)
- ``topic.refused``     job, topic            (reason optional: a topic or a result_format midbox
                        refuses for want of a public payload layout)
- ``record.refused``    job, topic, target, reason  (a field is not text, or the record is too large:
                        answered with an error, never run)
- ``record.skipped``    reason              (a record whose sys_id cannot be used: neither run nor answered)
- ``probe.started``     job, topic, target, port, credential
- ``probe.finished``    job, topic, target, port, credential, result_code, bytes_in, bytes_out,
                        duration_ms, result_sha256                            (error: one line, optional)
- ``target.denied``     job, topic, target, port, credential, reason          (rule optional)
- ``result.posted``     job, result_sha256, bytes                             (input_sys_id optional)
- ``error``             where, message                                        (job optional)
- ``config.reloaded``   config_version, config_sha256, signers, expires, previous_version
- ``config.reload_refused`` config_sha256, reason, kept_version
- ``config.pushed``     job, config_version, config_sha256, signers, previous_version  (a signed config
                        delivered through the instance, topic ``midbox.config``, was verified and
                        written beside the running one; ``config.reloaded`` follows when it is in force)
- ``config.push_refused`` job, config_sha256, reason, kept_version  (a delivered config failed
                        verification or could not be written: nothing on disk changed; config_sha256
                        is None when the payload could not be decoded)
- ``job.resumed``       job, topic          (found in processing after a restart)
- ``result.already_posted`` job             (the instance had our answer: not posted twice)
- ``outbox.full``       count               (claiming stopped; nothing is dropped)
- ``outbox.resumed``    count
- ``probe.scan``        job, topic, pairs, ports (TCP scan: allowed address/port pairs)
- ``probe.connect``     job, topic, probe, target, address, port, credential (the address actually used)
- ``ssh.hostkey.rejected`` job, target, address, port, verdict, keytype, fingerprint
- ``ssh.hostkey.pinned``   job, target, address, port, keytype, fingerprint, rule  (pin-on-first-use:
                           the first key seen for a target of that [[allow]] rule was pinned)
- ``ssh.sudo.refused``     job, target, port, rule  (must_sudo=true on a rule without ``sudo = true``)
- ``validity.warning``  what, source, expires, days_left  (the config, client certificate or instance CA
                        lapses within 7 days, then within 1 day: once per threshold)
- ``validity.expired``  what, source, expires  (it lapsed: no new work is claimed until it is renewed)
- ``validity.resumed``  config_version      (nothing has lapsed any more: work is claimed again)
- ``scope.denied``       job, topic, probe, target, port, reason  (the target is allowed but the job's
                        command, OID, method or path is outside the rule's scope; reason names the rule)
- ``quarantine.on``      reason, by          (probes stop; heartbeats and the outbox go on)
- ``quarantine.off``     reason, by
- ``job.quarantined``    job, topic, target  (claimed while quarantined: answered with an error, not run)
- ``replay.refused``     job, topic, reason  (older than the replay window, or already run per the journal)
- ``rate.limited``       job, topic, target, reason, retry_at  (a token bucket, a concurrency cap or an
                        open circuit breaker refused the job; retry_at is when the target is tried again)
- ``breaker.opened``     target, failures, retry_at
- ``breaker.closed``     target
- ``enroll.key_created``    name, key_sha256, csr_sha256, renewal  (``midbox enroll``: public key's SHA-256)
- ``enroll.cert_installed`` name, cert_sha256, key_sha256, not_after, issuer, renewal
- ``upgrade.started``   bundle_sha256, key_id, from_version, to_version, target  (``midbox upgrade``; its
                        entries are queued while the appliance holds the log and carry ``queued_at``)
- ``upgrade.refused``   bundle_sha256, reason  (bad signature, wrong platform, a downgrade not allowed)
- ``upgrade.swapped``   target, previous_sha256, new_sha256
- ``upgrade.restarted`` manager, service, version
- ``upgrade.confirmed`` from_version, to_version, new_sha256, reason  (the new version polled in time)
- ``upgrade.rolled_back`` from_version, to_version, new_sha256, reason  (healthy: the old one polled again)
- ``upgrade.rollback_failed`` from_version, to_version, new_sha256, reason  (a person must act)
- ``upgrade.abandoned`` from_version, to_version, new_sha256, reason  (stopped before the swap)
- ``upgrade.resumed``   phase, to_version  (an interrupted upgrade taken up again)
- ``audit.inbox_refused``  inbox, reason  (a file another midbox process left in ``audit/inbox/`` for the
                        running appliance was malformed or named an event it may not; it was dropped).
                        The events of an accepted file are recorded as themselves, with ``by`` (the
                        command, e.g. ``creds test``) and ``inbox`` (the file's id) added.

Written by the log itself:

- ``audit.genesis``     log_id, format          (always entry 0)
- ``audit.recovered``   dropped_bytes, dropped_sha256   (a torn last line, left by a crash, was cut off)
- ``audit.checkpoint``  size, head, key_id      (the log signed a checkpoint of its first ``size`` entries)
- ``audit.seal``        epoch, size, mac        (forward-secure seal of the first ``size`` entries)
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from hardening.audit.errors import AuditValueError

EVENTS: Mapping[str, frozenset[str]] = {
    "appliance.start": frozenset({"binary_sha256", "version", "config_version", "appliance"}),
    "appliance.stop": frozenset({"config_version", "reason"}),
    "config.accepted": frozenset({"config_version", "config_sha256", "signers", "expires"}),
    "config.refused": frozenset({"config_sha256", "reason"}),
    "credential.used": frozenset({"alias", "type", "job", "target", "topic"}),
    "credential.attempt": frozenset(
        {"job", "topic", "probe", "target", "address", "alias", "outcome", "via"}
    ),
    "job.claimed": frozenset({"job", "topic", "target"}),
    "topic.refused": frozenset({"job", "topic"}),
    "record.refused": frozenset({"job", "topic", "reason"}),
    "record.skipped": frozenset({"reason"}),
    "probe.started": frozenset({"job", "topic", "target", "port", "credential"}),
    "probe.finished": frozenset(
        {
            "job",
            "topic",
            "target",
            "port",
            "credential",
            "result_code",
            "bytes_in",
            "bytes_out",
            "duration_ms",
            "result_sha256",
        }
    ),
    "target.denied": frozenset({"job", "topic", "target", "port", "credential", "reason"}),
    "scope.denied": frozenset({"job", "topic", "probe", "target", "port", "reason"}),
    "quarantine.on": frozenset({"reason", "by"}),
    "quarantine.off": frozenset({"reason", "by"}),
    "job.quarantined": frozenset({"job", "topic", "target"}),
    "replay.refused": frozenset({"job", "topic", "reason"}),
    "rate.limited": frozenset({"job", "topic", "target", "reason", "retry_at"}),
    "breaker.opened": frozenset({"target", "failures", "retry_at"}),
    "breaker.closed": frozenset({"target"}),
    "result.posted": frozenset({"job", "result_sha256", "bytes"}),
    "error": frozenset({"where", "message"}),
    "config.reloaded": frozenset(
        {"config_version", "config_sha256", "signers", "expires", "previous_version"}
    ),
    "config.reload_refused": frozenset({"config_sha256", "reason", "kept_version"}),
    "config.pushed": frozenset({"job", "config_version", "config_sha256", "signers", "previous_version"}),
    "config.push_refused": frozenset({"job", "config_sha256", "reason", "kept_version"}),
    "job.resumed": frozenset({"job", "topic"}),
    "result.already_posted": frozenset({"job"}),
    "outbox.full": frozenset({"count"}),
    "outbox.resumed": frozenset({"count"}),
    "probe.scan": frozenset({"job", "topic", "pairs", "ports"}),
    "probe.connect": frozenset({"job", "topic", "probe", "target", "address", "port", "credential"}),
    "ssh.hostkey.rejected": frozenset(
        {"job", "target", "address", "port", "verdict", "keytype", "fingerprint"}
    ),
    "ssh.hostkey.pinned": frozenset({"job", "target", "address", "port", "keytype", "fingerprint", "rule"}),
    "ssh.sudo.refused": frozenset({"job", "target", "port", "rule"}),
    "validity.warning": frozenset({"what", "source", "expires", "days_left"}),
    "validity.expired": frozenset({"what", "source", "expires"}),
    "validity.resumed": frozenset({"config_version"}),
    "enroll.key_created": frozenset({"name", "key_sha256", "csr_sha256", "renewal"}),
    "enroll.cert_installed": frozenset(
        {"name", "cert_sha256", "key_sha256", "not_after", "issuer", "renewal"}
    ),
    "upgrade.started": frozenset({"bundle_sha256", "key_id", "from_version", "to_version", "target"}),
    "upgrade.refused": frozenset({"bundle_sha256", "reason"}),
    "upgrade.swapped": frozenset({"target", "previous_sha256", "new_sha256"}),
    "upgrade.restarted": frozenset({"manager", "service", "version"}),
    "upgrade.confirmed": frozenset({"from_version", "to_version", "new_sha256", "reason"}),
    "upgrade.rolled_back": frozenset({"from_version", "to_version", "new_sha256", "reason"}),
    "upgrade.rollback_failed": frozenset({"from_version", "to_version", "new_sha256", "reason"}),
    "upgrade.abandoned": frozenset({"from_version", "to_version", "new_sha256", "reason"}),
    "upgrade.resumed": frozenset({"phase", "to_version"}),
    "audit.inbox_refused": frozenset({"inbox", "reason"}),
    "audit.genesis": frozenset({"log_id", "format"}),
    "audit.recovered": frozenset({"dropped_bytes", "dropped_sha256"}),
    "audit.checkpoint": frozenset({"size", "head", "key_id"}),
    "audit.seal": frozenset({"epoch", "size", "mac"}),
}

# Events only the log itself writes; callers of record() cannot forge them.
INTERNAL_EVENTS = frozenset({"audit.genesis", "audit.recovered", "audit.checkpoint", "audit.seal"})

# A field with one of these names (any case, any depth) is refused: the audit log holds aliases and
# digests, and a mistake in wiring must fail loudly rather than write a secret to disk.
FORBIDDEN_FIELD_NAMES = frozenset(
    {"password", "passphrase", "secret", "private_key", "community", "auth_key", "priv_key", "token"}
)

_EVENT_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")


def check_event(event: str, fields: Mapping[str, object], *, internal: bool = False) -> None:
    """Refuse an unknown event, an internal one from outside, or one missing a required field."""
    if not isinstance(event, str) or len(event) > 64 or not _EVENT_NAME.fullmatch(event):
        raise AuditValueError(f"audit event name {str(event)[:64]!r} is not valid")
    required = EVENTS.get(event)
    if required is None:
        raise AuditValueError(f"audit event {event!r} is not in hardening.audit.events.EVENTS; add it there")
    if event in INTERNAL_EVENTS and not internal:
        raise AuditValueError(f"audit event {event!r} is written by the log itself")
    missing = sorted(required - fields.keys())
    if missing:
        raise AuditValueError(f"audit event {event!r} lacks field(s) {', '.join(missing)}")
