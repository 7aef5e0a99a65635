"""The development instance in-process: ``handle`` behind ``httpx.MockTransport`` instead of a socket.

The appliance's ``EccClient`` takes any ``httpx.AsyncClient``; given one built here, a runner or
outbox scenario (Retry-After, 401/403, ambiguous delivery, failover) runs in milliseconds with the
same instance logic as over real mutual TLS. What this cannot show - the TLS handshake, certificate
checks, a peer that stalls the socket - stays with the tests that use the real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx

from devinstance.server import InstanceState, Request, handle

BASE_URL = "https://instance.invalid"


def certificate_of(agent: str) -> dict[str, Any]:
    """What ``ssl.getpeercert()`` gives for a verified client certificate with CN ``agent``."""
    return {"subject": ((("commonName", agent),),)}


class _Body(httpx.AsyncByteStream):
    """The answer as a stream, the way a socket gives it: the appliance reads raw chunks under a cap
    (httpx reads ``content=`` bytes eagerly, which would bypass that path)."""

    def __init__(self, body: bytes, drip_s: float) -> None:
        self._body, self._drip_s = body, drip_s

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if not self._drip_s:
            yield self._body
            return
        for i in range(len(self._body)):
            yield self._body[i : i + 1]
            await asyncio.sleep(self._drip_s)


def mock_transport(state: InstanceState, *, agent: str | None) -> httpx.MockTransport:
    """Requests as if they came over mTLS with ``agent``'s certificate (None: no certificate,
    so Basic auth decides, as for an appliance configured with a user and password)."""
    peer = certificate_of(agent) if agent else None

    async def respond(request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        answer = handle(
            state,
            Request(
                method=request.method,
                target=request.url.raw_path.decode("ascii"),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                peer_cert=peer,
                declared_length=len(body),
            ),
        )
        headers = {
            "Content-Type": "application/json",
            "Content-Length": str(len(answer.body)),
            **answer.headers,
        }
        return httpx.Response(answer.status, headers=headers, stream=_Body(answer.body, answer.drip_s))

    return httpx.MockTransport(respond)


def in_process_client(
    state: InstanceState, *, agent: str | None, timeout_s: float = 10.0
) -> httpx.AsyncClient:
    """An AsyncClient shaped like the appliance's own (no redirects, no environment), served in-process."""
    return httpx.AsyncClient(
        base_url=BASE_URL,
        transport=mock_transport(state, agent=agent),
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(timeout_s),
        headers={"Accept": "application/json", "Content-Type": "application/json"},
    )
