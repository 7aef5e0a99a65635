"""serve() stopped from another thread, as the Windows service control handler stops it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.service import ServiceOptions, serve
from appliance.stoprequest import StopRequest
from tests.helpers import Pki, dev_instance, http_target
from tests.signing.helpers import install_trust
from tests.support.running import (
    audit_entries,
    config_bytes,
    http_job,
    service_thread,
    signed_config,
    wait_answer,
)


def test_a_stop_request_from_another_thread_drains_checkpoints_and_exits_zero(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    install_trust(state_dir, [key])
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        config = signed_config(
            tmp_path / "admin",
            [key],
            config_bytes(instance.url, dev_pki, 1, '"1-65535"'),
        )
        with service_thread(ServiceOptions(config, state_dir)) as service:
            assert service.ready.wait(20), service.result
            answer = wait_answer(store, http_job(store, f"{target}/hello"))
            assert answer["error_string"] == "" and "hello" in answer["payload"]
            service.stop.request()
            service.stop.request()  # idempotent
            service.thread.join(timeout=40)
        assert not service.thread.is_alive() and service.result == [0]
        anchors = store.query("ecc_queue", "queue=input^topic=midbox.audit.checkpoint")
        assert anchors, "the audit checkpoint was not posted on the way out"
    stops = [e for e in audit_entries(state_dir) if e["event"] == "appliance.stop"]
    assert len(stops) == 1 and stops[0]["fields"]["reason"] == "service stop"  # type: ignore[index]


def test_a_stop_requested_before_the_appliance_is_up_stops_it_as_soon_as_it_is(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    install_trust(state_dir, [key])
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        config = signed_config(
            tmp_path / "admin",
            [key],
            config_bytes(instance.url, dev_pki, 1, '"1-65535"'),
        )
        stop = StopRequest()
        stop.request()
        code = asyncio.run(asyncio.wait_for(serve(ServiceOptions(config, state_dir), stop_request=stop), 30))
    assert code == 0
    assert [e["event"] for e in audit_entries(state_dir)].count("appliance.stop") == 1
