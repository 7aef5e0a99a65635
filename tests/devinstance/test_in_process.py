"""One instance logic, two carriers: the request handler answers the same over real mTLS and in-process."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from appliance.queue.answers import InstanceBusyError
from appliance.queue.client import EccClient
from devinstance.server import Fault, InstanceState
from devinstance.store import Store
from devinstance.transport import in_process_client
from hardening.tls import client_context
from tests.helpers import AGENT, NAME, Pki, dev_instance, params

PATH = "/api/now/table/ecc_queue"


async def _exchanges(client: httpx.AsyncClient, state: InstanceState) -> list[tuple[int, object]]:
    """The same requests, in order; each answer reduced to what does not depend on time or ids."""
    [sys_id] = state.store.enqueue([{"agent": AGENT, "topic": "RESTProbe", "payload": params(url="x")}])
    answers = []
    for method, url, body in (
        ("GET", f"{PATH}?sysparm_query=agent={AGENT}^queue=output&sysparm_fields=topic,state", None),
        ("PATCH", f"{PATH}/{sys_id}", {"state": "processing"}),
        ("PATCH", f"{PATH}/{sys_id}", {"agent": "mid.server.someone-else"}),  # acting for another MID
        ("GET", "/api/now/table/sys_user", None),
        ("POST", f"{PATH}", "[1, 2]"),
    ):
        content = body if isinstance(body, str) else json.dumps(body) if body else None
        r = await client.request(method, url, content=content)
        shape = r.json()
        if "result" in shape and isinstance(shape["result"], dict):
            shape = {"result": {"state": shape["result"].get("state")}}
        answers.append((r.status_code, shape))
    return answers


def test_real_mtls_and_in_process_give_the_same_answers(dev_pki: Pki, tmp_path: Path) -> None:
    with dev_instance(dev_pki, tmp_path / "real.sqlite") as instance:
        ctx = client_context(
            ca_file=dev_pki.ca.cert, client_cert=dev_pki.client.cert, client_key=dev_pki.client.key, name=NAME
        )

        async def over_tls() -> list[tuple[int, object]]:
            async with httpx.AsyncClient(base_url=instance.url, verify=ctx, trust_env=False) as c:
                return await _exchanges(c, instance.state)

        real = asyncio.run(over_tls())
    store = Store(tmp_path / "mem.sqlite")
    state = InstanceState(store)

    async def in_process() -> list[tuple[int, object]]:
        async with in_process_client(state, agent=AGENT) as c:
            return await _exchanges(c, state)

    assert asyncio.run(in_process()) == real
    assert [status for status, _ in real] == [200, 200, 403, 400, 400]
    store.close()


def test_without_a_certificate_or_a_user_the_instance_answers_401(tmp_path: Path) -> None:
    state = InstanceState(Store(tmp_path / "db.sqlite"))

    async def go() -> int:
        async with in_process_client(state, agent=None) as c:
            return (await c.get(PATH)).status_code

    assert asyncio.run(go()) == 401


def test_queue_scenarios_run_in_process_in_milliseconds(tmp_path: Path) -> None:
    state = InstanceState(Store(tmp_path / "db.sqlite"))
    state.store.enqueue([{"agent": AGENT, "topic": "RESTProbe", "payload": params(url="x")}] * 3)
    state.faults.append(Fault(status=429, count=1, retry_after="7"))

    async def go() -> tuple[float | None, int]:
        client = EccClient(in_process_client(state, agent=AGENT), name=NAME, max_response_bytes=1_000_000)
        try:
            with pytest.raises(InstanceBusyError) as busy:
                await client.poll(10)
            return busy.value.retry_after_s, len((await client.poll(10)).records)
        finally:
            await client.aclose()

    started = time.monotonic()
    assert asyncio.run(go()) == (7.0, 3)
    print(f"in-process: busy answer and a 3-record poll in {(time.monotonic() - started) * 1000:.1f} ms")
