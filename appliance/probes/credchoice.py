"""Which credential a probe uses, the way real Discovery probes ask for one.

Real SSH and SNMP probes carry no local alias. They carry nothing, a ``credential_id`` (the sys_id of a
``discovery_credentials`` record, added by the instance's affinity rule) or a ``credential_tag``; the MID
tries the credentials it may use until one works and remembers which one did. midbox does the same
with local aliases only:

1. The candidates, in order:
   a. the job's own ``credential`` parameter (midbox's extension: one alias, nothing else tried);
   b. else the aliases the signed ``[credential_map]`` gives for ``credential_id`` / ``credential_tag``
      (an unmapped id or tag is an error: the instance may not name credentials the admins did not map);
   c. else the aliases of every allow rule covering (probe, address, port), in rule order.
2. Each candidate must be allowed by the policy for this target and (for b and c) be of a type the
   probe can use; the alias that worked here last time goes first.
3. Each is tried in turn; only a refusal by the target (``CredentialRejectedError``) moves on. Every try is
   audited; the winner is remembered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from appliance.errors import (
    ApplianceError,
    CredentialRejectedError,
    EveryCredentialRejectedError,
    PayloadError,
    ProbeError,
)
from appliance.interfaces import Credential
from appliance.probes.base import Job, ProbeContext, use_credential
from hardening.policy import IPAddress

T = TypeVar("T")

_MAX_NAME = 100


def _named(job: Job) -> tuple[str, str | None]:
    """How the job names its credential: ('job', alias), ('id', sys_id), ('tag', tag) or ('rule', None)."""
    alias = (job.param("credential") or "").strip()
    if alias:
        return "job", alias
    for via, param in (("id", "credential_id"), ("tag", "credential_tag")):
        value = (job.param(param) or "").strip()
        if value:
            if len(value) > _MAX_NAME:
                raise PayloadError(f"parameter {param!r} is longer than {_MAX_NAME} characters")
            return via, value.lower() if via == "id" else value
    return "rule", None


def explicit_alias(job: Job) -> str | None:
    """The alias the job names itself (midbox's ``credential`` extension), for the target's policy check."""
    alias = (job.param("credential") or "").strip()
    return alias or None


def candidate_aliases(
    ctx: ProbeContext,
    job: Job,
    *,
    probe: str,
    types: frozenset[str],
    address: IPAddress,
    port: int,
    hostname: str | None = None,
) -> list[str]:
    """The aliases to try for ``job`` against ``address``, best first; ProbeError if there are none."""
    return _candidates(ctx, job, probe=probe, types=types, address=address, port=port, hostname=hostname)[1]


def _candidates(
    ctx: ProbeContext,
    job: Job,
    *,
    probe: str,
    types: frozenset[str],
    address: IPAddress,
    port: int,
    hostname: str | None,
) -> tuple[str, list[str]]:
    via, name = _named(job)
    # 1. The candidates as named.
    if via == "job" and name is not None:
        return via, [name]  # the policy check of the target already named this alias
    if via == "rule":
        named = ctx.policy.credentials_for(probe=probe, address=address, port=port, hostname=hostname)
        if not named:
            raise ProbeError(
                f"no [[allow]] rule for {probe} on {address} port {port} lists 'credentials'; "
                "add the aliases to try there"
            )
    else:
        try:
            named = (
                ctx.credential_map.aliases(
                    credential_id=name if via == "id" else None, credential_tag=name if via == "tag" else None
                )
                or ()
            )
        except KeyError:
            what = "credential_id" if via == "id" else "credential_tag"
            section = "ids" if via == "id" else "tags"
            raise ProbeError(
                f"{what} {name!r} is not mapped to a local credential; add it under "
                f"[credential_map.{section}] in the signed config"
            ) from None
    # 2. Allowed here, of a usable type, affinity first.
    allowed = [
        a
        for a in named
        if ctx.policy.check(probe=probe, address=address, port=port, credential=a, hostname=hostname).allowed
    ]
    usable: list[str] = []
    for alias in allowed:
        try:
            credential = ctx.credentials.lookup(alias)
        except ApplianceError:
            continue  # named by the config but not in this host's store: the others may still work
        if credential.type in types:
            usable.append(alias)
    if not usable:
        raise ProbeError(
            f"none of the credentials {', '.join(named)} can be used for {probe} on {address} port {port} "
            f"(allowed there: {', '.join(allowed) or 'none'}; in the store with type "
            f"{'/'.join(sorted(types))}: none); add them with 'midbox creds add' or fix the rule"
        )
    preferred = ctx.affinity.get(probe, str(address), port)
    if preferred in usable:
        usable.remove(preferred)
        usable.insert(0, preferred)
    return via, usable[: ctx.limits.credential_attempts]


async def with_credentials(
    ctx: ProbeContext,
    job: Job,
    *,
    probe: str,
    types: frozenset[str],
    target: str,
    address: IPAddress,
    port: int,
    hostname: str | None = None,
    attempt: Callable[[str, Credential], Awaitable[T]],
) -> T:
    """Run ``attempt`` with each candidate credential until one is not refused by the target."""
    via, aliases = _candidates(
        ctx, job, probe=probe, types=types, address=address, port=port, hostname=hostname
    )
    rejected: list[str] = []
    last_reason = ""
    for alias in aliases:
        credential = use_credential(ctx, job, alias, target)
        if via == "job" and credential.type not in types:
            raise ProbeError(
                f"credential {alias!r} is a {credential.type}, not an {probe.upper()} credential "
                f"({', '.join(sorted(types))})"
            )
        fields: dict[str, object] = {
            "job": job.sys_id,
            "topic": job.topic,
            "probe": probe,
            "target": target,
            "address": str(address),
            "port": port,
            "alias": alias,
            "via": via,
        }
        try:
            result = await attempt(alias, credential)
        except CredentialRejectedError as e:
            ctx.audit.record("credential.attempt", {**fields, "outcome": "rejected", "reason": str(e)[:200]})
            rejected.append(alias)
            last_reason = str(e)
            if ctx.affinity.get(probe, str(address), port) == alias:
                ctx.affinity.forget(probe, str(address), port)
            continue
        except BaseException as e:
            ctx.audit.record("credential.attempt", {**fields, "outcome": "error", "reason": type(e).__name__})
            raise
        ctx.audit.record("credential.attempt", {**fields, "outcome": "accepted"})
        ctx.affinity.remember(probe, str(address), port, alias)
        return result
    raise EveryCredentialRejectedError(
        f"{target} refused every credential tried ({', '.join(rejected)}; last: {last_reason}); check the "
        "secrets with 'midbox creds verify' and the accounts on the target"
    )
