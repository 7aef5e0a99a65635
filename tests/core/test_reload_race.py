"""A runner being replaced (a reload) must not report a poll still in flight as its successor's.

The supervisor marks the health "reloading" and stops the old runner; if that runner's poll was on the
wire, its answer used to flip the health back to "running" (READY=1 for the old config) and claim the
records it brought. It now leaves both to the runner that follows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from appliance.app import run_appliance
from appliance.health import Health
from appliance.probes.base import MemoryAudit
from devinstance.server import InstanceState
from devinstance.store import Store
from devinstance.transport import BASE_URL, mock_transport
from tests.helpers import AGENT, LOOPBACK_HTTP, TEST_SEAL_KEY, Pki, config_text, fast_limits, params, trusted
from tests.support.fakes import NoCredentials


class HeldPolls(httpx.AsyncBaseTransport):
    """The in-process instance, with polls of the output queue held while ``hold`` is set."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.hold = False
        self.held = asyncio.Event()  # a poll is waiting at the gate
        self.gate = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        polling = request.method == "GET" and "queue=output" in request.url.params.get("sysparm_query", "")
        if self.hold and polling:
            self.held.set()
            await self.gate.wait()
        return await self.inner.handle_async_request(request)


def test_a_poll_in_flight_when_the_runner_stops_neither_claims_nor_says_running(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    state = InstanceState(Store(tmp_path / "db.sqlite"))
    config = trusted(config_text("https://instance.invalid", dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
    health = Health(version="test", binary_sha256="")

    async def scenario() -> str:
        transport = HeldPolls(mock_transport(state, agent=AGENT))
        http = httpx.AsyncClient(
            base_url=BASE_URL, transport=transport, trust_env=False, follow_redirects=False
        )
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_appliance(
                config,
                state_dir=state_dir,
                audit=MemoryAudit(),
                credentials=NoCredentials(),
                stop=stop,
                limits=fast_limits(),
                seal_key=TEST_SEAL_KEY,
                http=http,
                health=health,
            )
        )
        try:
            while health.state != "running":  # the first poll answered
                await asyncio.sleep(0.01)
            transport.hold = True
            await asyncio.wait_for(transport.held.wait(), 10)
            # What the supervisor does on a verified new config, while this runner's poll is out:
            state.store.enqueue([{"agent": AGENT, "topic": "RESTProbe", "payload": params(url="x")}])
            health.state = "reloading"
            stop.set()
            transport.gate.set()
            await asyncio.wait_for(task, 30)
        finally:
            await http.aclose()
        return health.state

    assert asyncio.run(scenario()) == "reloading"  # the next runner's first poll says running
    [job] = state.store.query("ecc_queue", f"agent={AGENT}^queue=output")
    assert job["state"] == "ready"  # fetched while stopping, never claimed: the next runner takes it
    state.store.close()
