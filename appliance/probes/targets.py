"""Resolve a target once and check every address against the policy before any connection.

Probes connect to the address returned here, never to the name again, so a second DNS answer
(rebinding) cannot move a probe outside the allowlist.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from appliance.errors import ProbeError, TargetDenied
from appliance.probes.base import ProbeContext
from hardening.policy import AllowRule, IPAddress


async def resolve(host: str) -> list[IPAddress]:
    """All addresses of ``host`` (an IP literal resolves to itself), in resolver order, deduplicated."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ProbeError(f"cannot resolve target {host!r}: {e.strerror}") from e
    seen: list[IPAddress] = []
    for info in infos:
        addr = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if addr not in seen:
            seen.append(addr)
    if not seen:
        raise ProbeError(f"target {host!r} has no address")
    return seen


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
    addresses = await resolve(host)
    first_rule: AllowRule | None = None
    for address in addresses:
        decision = ctx.policy.check(
            probe=probe, address=address, port=port, credential=credential, hostname=hostname
        )
        if not decision.allowed:
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
            raise TargetDenied(f"target {host} ({address}) port {port} denied for {probe}: {decision.reason}")
        if first_rule is None:
            first_rule = ctx.policy.rule(decision.rule)
    return addresses, first_rule


def is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
