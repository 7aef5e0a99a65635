"""Resolve a target once and check every address against the policy before any connection.

Probes connect to the address returned here, never to the name again, so a second DNS answer
(rebinding) cannot move a probe outside the allowlist.
"""

from __future__ import annotations

import ipaddress

from appliance.errors import TargetDeniedError
from appliance.probes.base import ProbeContext
from hardening.policy import AllowRule, IPAddress


async def checked_addresses(
    ctx: ProbeContext, *, probe: str, host: str, port: int, credential: str | None
) -> list[IPAddress]:
    """Resolve ``host`` and return its addresses only if the policy allows every one of them.

    Every address must pass, not just one: otherwise a name with one allowed and one forbidden
    address would let the resolver's order decide where the probe goes.
    """
    addresses, _ = await checked_target(ctx, probe=probe, host=host, port=port, credential=credential)
    return addresses


async def checked_target(
    ctx: ProbeContext, *, probe: str, host: str, port: int, credential: str | None
) -> tuple[list[IPAddress], AllowRule | None]:
    """``checked_addresses``, plus the rule that allowed the first address (the one connected to)."""
    hostname = None if is_literal(host) else host
    # An IP literal is its own answer; only names go to the resolver (the context's seam).
    addresses = [ipaddress.ip_address(host.strip("[]"))] if hostname is None else await ctx.resolver(host)
    first_rule: AllowRule | None = None
    first_number: int | None = None
    for address in addresses:
        decision = ctx.policy.check(
            probe=probe, address=address, port=port, credential=credential, hostname=hostname
        )
        if not decision.allowed:
            if decision.scope is not None:
                ctx.audit.record(
                    "scope.denied",
                    {
                        "probe": probe,
                        "target": host,
                        "address": str(address),
                        "port": port,
                        "rule": decision.rule,
                        "reason": decision.scope,
                    },
                )
                raise TargetDeniedError(
                    f"{probe} job on {host} refused: {decision.scope}; if it should run, add it to that "
                    "rule's scope and sign the config again"
                )
            ctx.audit.record(
                "target.denied",
                {
                    "probe": probe,
                    "target": host,
                    "address": str(address),
                    "port": port,
                    "credential": credential,
                    "reason": decision.reason,
                },
            )
            raise TargetDeniedError(
                f"target {host} ({address}) port {port} denied for {probe}: {decision.reason}"
            )
        if first_rule is None:
            first_rule, first_number = ctx.policy.rule(decision.rule), decision.rule
    if ctx.lease is not None:  # the target's breaker, buckets and caps, and the deciding rule's
        await ctx.lease.acquire(str(addresses[0]), port, first_number)
    return addresses, first_rule


def is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
