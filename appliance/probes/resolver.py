"""Name resolution for probes, behind a seam: ``ProbeContext.resolver`` is this by default.

Tests hand the probes a resolver whose answers they control (a name with one allowed and one
forbidden address), so the every-address rule of ``targets`` is exercised without a DNS server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable

from appliance.errors import ProbeError
from hardening.policy import IPAddress

# All addresses of a host name, in the order a probe should try them; raises ProbeError if none.
Resolver = Callable[[str], Awaitable[list[IPAddress]]]


async def system_resolve(host: str) -> list[IPAddress]:
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
