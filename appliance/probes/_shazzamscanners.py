"""The Shazzam scanners: what one (address, port probe, port) gives back.

GenericTCP connects; BannerTCP connects and reads the banner (bounded bytes and time); HTTP and HTTPS
connect only (no request is sent yet). SNMP lives in ``_shazzamsnmp``. DNS, NBT and SLP are not
implemented and say so in the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass

from appliance.limits import SHAZZAM_BANNER_BYTES
from appliance.payload import xml_text
from appliance.probes._scanpool import tcp_connect
from appliance.probes._shazzamspec import PortProbe, Tuning
from hardening.policy import IPAddress


@dataclass(frozen=True)
class Outcome:
    """``result`` is open, refused, timed_out or io_error; ``fields`` become child elements, in order."""

    result: str
    fields: tuple[tuple[str, str], ...] = ()


def unsupported(probe: PortProbe) -> Outcome:
    return Outcome(
        "io_error",
        (
            (
                "error_msg",
                f"midbox does not implement the {probe.scanner} scanner; nothing was sent "
                "(classify this service through another port probe)",
            ),
        ),
    )


async def scan_tcp(probe: PortProbe, address: IPAddress, port: int, tuning: Tuning) -> Outcome:
    """GenericTCP, BannerTCP, HTTP and HTTPS."""
    wait = {
        "GenericTCP": tuning.generic_connect_s,
        "BannerTCP": tuning.banner_wait_s,
        "HTTP": tuning.http_connect_s,
        "HTTPS": tuning.https_connect_s,
    }[probe.scanner]
    started = time.monotonic()
    connected = await tcp_connect(address, port, wait)
    if connected.sock is None:
        if connected.state == "io_error":
            return Outcome("io_error", (("error_msg", f"connect failed: {connected.error}"),))
        return Outcome(connected.state)
    try:
        if probe.scanner != "BannerTCP":
            return Outcome("open")
        # ServiceNow's BannerTCP_waitForConnectMS covers the connect and the banner together.
        banner = await _read_banner(connected.sock, wait - (time.monotonic() - started))
    finally:
        with contextlib.suppress(OSError):
            connected.sock.close()
    text = xml_text(banner).strip()
    return Outcome("open", (("banner_text", text),) if text else ())


async def _read_banner(sock: socket.socket, budget_s: float) -> bytes:
    """Bytes up to the first line end, the cap, the peer closing, or the end of ``budget_s``."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + max(budget_s, 0.05)
    data = b""
    while len(data) < SHAZZAM_BANNER_BYTES and b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, SHAZZAM_BANNER_BYTES - len(data)), remaining)
        except (TimeoutError, OSError):
            break  # no (more) banner: the port is open all the same
        if not chunk:
            break
        data += chunk
    return data[:SHAZZAM_BANNER_BYTES]
