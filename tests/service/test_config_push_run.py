"""A signed config pushed on the (development) instance is in force on a running ``midbox run``:
the next job is judged by the new policy; a replayed older config is refused and changes nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import signal
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devinstance.configpush import push_records
from tests.helpers import NAME, Pki, dev_instance, http_target
from tests.signing.helpers import install_trust
from tests.support.cli import run_process
from tests.support.config_push import in_force
from tests.support.running import appliance, audit_entries, config_bytes, http_job, signed_config, wait_answer


def test_a_config_pushed_on_the_instance_is_in_force_and_a_replayed_one_is_refused(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    install_trust(state_dir, [key], appliance_name=NAME)
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        port = int(target.rsplit(":", 1)[1])
        other = port + 1 if port < 65535 else port - 1
        # The appliance's own directory, and the admin's workstation where version 2 is signed.
        v1 = config_bytes(instance.url, dev_pki, 1, str(other))
        config = signed_config(tmp_path / "etc", [key], v1)
        v1_sig = config.with_name(config.name + ".sig").read_bytes()
        v2 = config_bytes(instance.url, dev_pki, 2, str(port))
        pushed = signed_config(tmp_path / "workstation", [key], v2, version=2)
        old = signed_config(tmp_path / "old", [key], v1)  # version 1 again: what a replay delivers
        with appliance(config, state_dir, tmp_path / "run.log") as proc:
            assert "denied" in wait_answer(store, http_job(store, f"{target}/hello"))["error_string"]

            [job] = store.enqueue(push_records(pushed, [NAME]))
            took = in_force(state_dir, 2)
            answer = wait_answer(store, job)
            assert answer["error_string"] == "", answer["error_string"]
            assert (
                'verdict="accepted"' in answer["payload"]
                and "<config_version>2</config_version>" in answer["payload"]
            )
            # The next job runs under version 2, which allows the target's port.
            allowed = wait_answer(store, http_job(store, f"{target}/hello"))
            assert allowed["error_string"] == "" and "hello" in allowed["payload"]
            assert config.read_bytes() == v2
            prev = config.with_name(config.name + ".prev")
            assert prev.read_bytes() == v1 and prev.with_name(prev.name + ".sig").read_bytes() == v1_sig

            files = {p.name: p.read_bytes() for p in config.parent.iterdir()}
            [replay] = store.enqueue(push_records(old, [NAME]))
            refused = wait_answer(store, replay)
            assert "rollback refused" in refused["error_string"], refused["error_string"]
            assert {p.name: p.read_bytes() for p in config.parent.iterdir()} == files
            still = wait_answer(store, http_job(store, f"{target}/hello"))
            assert still["error_string"] == "" and proc.poll() is None

            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, (tmp_path / "run.log").read_text()[-2000:]
    entries = audit_entries(state_dir)
    events = [e["event"] for e in entries]
    assert (
        events.index("config.pushed") < events.index("config.reloaded") < events.index("config.push_refused")
    )
    [refusal] = [e["fields"] for e in entries if e["event"] == "config.push_refused"]
    assert refusal["config_sha256"] == hashlib.sha256(v1).hexdigest() and refusal["kept_version"] == 2
    assert run_process("audit", "verify", "--state-dir", str(state_dir)).returncode == 0
    print(f"push -> in force: {took:.2f} s at poll_interval_s 0.1")


def test_an_appliance_held_by_an_expired_config_takes_a_pushed_renewal(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    from tests.support.expiry import queue_state, signed_expiring, wait_until

    key = Ed25519PrivateKey.generate()
    install_trust(state_dir, [key], appliance_name=NAME)
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=6)).replace(microsecond=0)
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        config = signed_expiring(tmp_path / "etc", key, instance.url, dev_pki, 1, expires)
        renewal = signed_expiring(
            tmp_path / "ws", key, instance.url, dev_pki, 2, expires + dt.timedelta(days=30)
        )
        with appliance(config, state_dir, tmp_path / "run.log") as proc:
            in_force(state_dir, 1)
            wait_until(expires + dt.timedelta(seconds=1))
            late = http_job(store, f"{target}/hello")
            time.sleep(1)
            assert queue_state(store, late) == "ready", "work was claimed on an expired config"
            # Held, it still polls for a signed config: that is what ends the hold.
            [job] = store.enqueue(push_records(renewal, [NAME]))
            answer = wait_answer(store, job)
            assert answer["error_string"] == "" and 'verdict="accepted"' in answer["payload"]
            in_force(state_dir, 2)
            done = wait_answer(store, late)
            assert done["error_string"] == "" and "hello" in done["payload"]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    events = [e["event"] for e in audit_entries(state_dir)]
    assert events.index("validity.expired") < events.index("config.pushed") < events.index("validity.resumed")
