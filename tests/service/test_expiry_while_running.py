"""Expiry while running: ``midbox run`` stops claiming work the moment its config or client certificate
lapses, says why in heartbeats, still delivers what it kept, and takes a new config or a renewed
certificate without a restart."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devinstance import pki
from tests.helpers import AGENT, Pki, dev_instance, http_target
from tests.signing.helpers import install_trust
from tests.support.expiry import queue_state, signed_expiring, wait_until
from tests.support.running import (
    appliance,
    audit_entries,
    http_job,
    wait_answer,
)


def _heartbeat(store) -> str:  # type: ignore[no-untyped-def]
    return str(store.enqueue([{"agent": AGENT, "topic": "HeartbeatProbe", "payload": "<parameters/>"}])[0])


def _wait_claimed(store, sys_id: str, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while queue_state(store, sys_id) == "ready" and time.monotonic() < end:
        time.sleep(0.05)
    assert queue_state(store, sys_id) != "ready", "the job was not claimed"


def test_a_config_that_expires_during_a_run(dev_pki: Pki, tmp_path: Path, state_dir: Path) -> None:
    admin = Ed25519PrivateKey.generate()
    install_trust(state_dir, [admin])
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=12)).replace(microsecond=0)
    log = tmp_path / "run.log"
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        config = signed_expiring(tmp_path / "admin", admin, instance.url, dev_pki, 1, expires)
        with appliance(config, state_dir, log) as proc:
            assert "hello" in wait_answer(store, http_job(store, f"{target}/hello"))["payload"]
            # A job still running at expiry: its result is delivered afterwards.
            left_ms = int((expires - dt.datetime.now(dt.UTC)).total_seconds() * 1000)
            assert left_ms > 2000, "the appliance took too long to start for this test"
            slow = http_job(store, f"{target}/work?ms={left_ms + 2000}")
            _wait_claimed(store, slow)
            wait_until(expires + dt.timedelta(seconds=0.5))
            late = http_job(store, f"{target}/hello")
            beat = wait_answer(store, _heartbeat(store))
            assert "<mid_operational_state>Paused</mid_operational_state>" in beat["payload"]
            assert "config expired" in beat["payload"], beat["payload"]
            assert "hello" in wait_answer(store, slow)["payload"]  # drained after expiry
            time.sleep(1.0)  # ten poll intervals
            assert queue_state(store, late) == "ready", "work was claimed on an expired config"
            status = json.loads((state_dir / "status.json").read_text())
            assert status["state"] == "expired" and "config expired" in status["reason"], status
            # A newly signed config is picked up without a restart, and work resumes.
            renewed = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=30)
            signed_expiring(tmp_path / "admin", admin, instance.url, dev_pki, 2, renewed)
            assert "hello" in wait_answer(store, late, timeout=20)["payload"]
            assert proc.poll() is None
    text = log.read_text()
    assert "expires in" in text and "expired at" in text and "no new work is claimed" in text
    events = [e["event"] for e in audit_entries(state_dir)]
    order = ["validity.warning", "validity.expired", "config.reloaded", "validity.resumed"]
    assert all(e in events for e in order), events
    assert [events.index(e) for e in order] == sorted(events.index(e) for e in order)
    warning = next(e for e in audit_entries(state_dir) if e["event"] == "validity.warning")
    assert warning["fields"]["what"] == "config" and warning["fields"]["days_left"] < 1


def test_a_client_certificate_renewed_while_held(dev_pki: Pki, tmp_path: Path, state_dir: Path) -> None:
    admin = Ed25519PrivateKey.generate()
    install_trust(state_dir, [admin])
    certs = tmp_path / "certs"
    short = pki.issue(dev_pki.ca, certs, "appliance", AGENT, server=False, valid_for=dt.timedelta(seconds=10))
    p = Pki(dev_pki.directory, dev_pki.ca, dev_pki.server, short)
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=30)
        config = signed_expiring(tmp_path / "admin", admin, instance.url, p, 1, expires)
        with appliance(config, state_dir, tmp_path / "run.log") as proc:
            assert "hello" in wait_answer(store, http_job(store, f"{target}/hello"))["payload"]
            lapse = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=11)
            wait_until(lapse)
            late = http_job(store, f"{target}/hello")
            time.sleep(1.0)
            assert queue_state(store, late) == "ready"
            pki.issue(dev_pki.ca, certs, "appliance", AGENT, server=False)  # renewed in place
            assert "hello" in wait_answer(store, late, timeout=20)["payload"]
            assert proc.poll() is None
    fields = {e["event"]: e["fields"] for e in audit_entries(state_dir)}
    assert fields["validity.expired"]["what"] == "client certificate"
    assert "validity.resumed" in fields
    assert "a certificate or CA file changed" in (tmp_path / "run.log").read_text()
