"""``midbox run`` as the operator starts it: a real process, a signed config, signals, the audit log."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.helpers import NAME, Pki, dev_instance, http_target
from tests.signing.helpers import install_trust, write_signed_config
from tests.support.cli import run_process
from tests.support.running import (
    EXPIRES,
    NOT_BEFORE,
    appliance,
    audit_events,
    config_bytes,
    http_job,
    signed_config,
    wait_answer,
)


def listening_inodes() -> set[str]:
    """Socket inodes of every TCP socket in LISTEN and every bound UDP socket on this host."""
    found: set[str] = set()
    for name, listen_state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", None), ("udp6", None)):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            if listen_state is None or cols[3] == listen_state:
                found.add(cols[9])
    return found


def socket_inodes(pid: int) -> set[str]:
    out: set[str] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


@pytest.fixture
def admin_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_run_answers_jobs_never_listens_and_stops_cleanly_with_a_verified_audit_log(
    dev_pki: Pki, tmp_path: Path, state_dir: Path, admin_key: Ed25519PrivateKey
) -> None:
    install_trust(state_dir, [admin_key])
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        config = signed_config(
            tmp_path / "admin",
            [admin_key],
            config_bytes(instance.url, dev_pki, 1, '"1-65535"'),
        )
        with appliance(config, state_dir, tmp_path / "run.log") as proc:
            answer = wait_answer(store, http_job(store, f"{target}/hello"))
            assert answer["error_string"] == "", answer["error_string"]
            assert "hello" in answer["payload"]
            # Outbound only: none of the process's sockets is listening, sampled while it works.
            for _ in range(5):
                wait_answer(store, http_job(store, f"{target}/hello"))
                mine = socket_inodes(proc.pid)
                assert mine, "the appliance should hold its outbound connection"
                assert not mine & listening_inodes()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, (tmp_path / "run.log").read_text()[-2000:]
        # The log's head was anchored on the instance as it stopped.
        anchors = store.query("ecc_queue", "queue=input^topic=midbox.audit.checkpoint")
        assert anchors and "checkpoint" in anchors[-1]["payload"]
    verify = run_process("audit", "verify", "--state-dir", str(state_dir))
    assert verify.returncode == 0, verify.stderr
    events = audit_events(state_dir)
    for event in ("config.accepted", "appliance.start", "job.claimed", "result.posted", "appliance.stop"):
        assert event in events, f"{event} missing from the audit log"
    assert events.index("appliance.start") < events.index("job.claimed") < events.index("appliance.stop")


def test_run_refuses_an_unsigned_config_with_one_line_and_exit_1(
    dev_pki: Pki, tmp_path: Path, state_dir: Path, admin_key: Ed25519PrivateKey
) -> None:
    install_trust(state_dir, [admin_key])
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        config = signed_config(
            tmp_path / "admin",
            [],
            config_bytes(instance.url, dev_pki, 1, '"1-65535"'),
        )
        done = run_process("run", "--config", str(config), "--state-dir", str(state_dir))
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("midbox: ") and "sign" in lines[0].lower(), done.stderr
        # It never reached out: the instance saw no poll from this appliance.
        assert NAME not in instance.state.last_seen
    assert "config.refused" in audit_events(state_dir)


def test_a_bad_config_on_sighup_is_refused_and_a_good_one_is_applied(
    dev_pki: Pki, tmp_path: Path, state_dir: Path, admin_key: Ed25519PrivateKey
) -> None:
    install_trust(state_dir, [admin_key])
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        port = int(target.rsplit(":", 1)[1])
        admin = tmp_path / "admin"
        other = port + 1 if port < 65535 else port - 1
        config = signed_config(
            admin,
            [admin_key],
            config_bytes(instance.url, dev_pki, 1, str(other)),
        )
        with appliance(config, state_dir, tmp_path / "run.log") as proc:
            denied = wait_answer(store, http_job(store, f"{target}/hello"))
            assert "denied" in denied["error_string"]
            # Tampered: the new bytes do not match the signature. The old config stays in force.
            good_v2 = config_bytes(instance.url, dev_pki, 2, str(port))
            config.write_bytes(good_v2.replace(b"version = 2", b"version = 9"))
            proc.send_signal(signal.SIGHUP)
            still = wait_answer(store, http_job(store, f"{target}/hello"))
            assert proc.poll() is None and "denied" in still["error_string"]
            # Properly signed version 2 allows the target's port.
            write_signed_config(
                admin, [admin_key], good_v2, name=NAME, version=2, expires=EXPIRES, not_before=NOT_BEFORE
            )
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 20
            while True:
                answer = wait_answer(store, http_job(store, f"{target}/hello"))
                if not answer["error_string"] or time.monotonic() > deadline:
                    break
            assert answer["error_string"] == "", answer["error_string"]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    events = audit_events(state_dir)
    assert events.index("config.reload_refused") < events.index("config.reloaded")


def test_midbox_reload_prints_the_running_appliances_verdict(
    dev_pki: Pki, tmp_path: Path, state_dir: Path, admin_key: Ed25519PrivateKey
) -> None:
    install_trust(state_dir, [admin_key])
    nobody = run_process(
        "reload", "--config", str(tmp_path / "c.toml"), "--state-dir", str(state_dir), "--wait", "1"
    )
    assert nobody.returncode == 3 and "no running appliance answered" in nobody.stderr
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        admin = tmp_path / "admin"
        body = config_bytes(instance.url, dev_pki, 1, "80")
        config = signed_config(admin, [admin_key], body)
        reload = ("reload", "--config", str(config), "--state-dir", str(state_dir))
        log = tmp_path / "run.log"
        with appliance(config, state_dir, log) as proc:
            deadline = time.monotonic() + 30
            while "running as" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            same = run_process(*reload)
            assert (same.returncode, same.stdout) == (0, "unchanged: still on config version 1\n"), (
                same.stderr
            )
            config.write_bytes(body.replace(b"80", b"81"))  # edited after signing
            refused = run_process(*reload)
            assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1
            assert "reload refused, still on config version 1" in refused.stderr
            assert "changed after signing" in refused.stderr
            config.write_bytes(body)  # the good file put back
            back = run_process(*reload)
            assert back.returncode == 0 and "unchanged" in back.stdout
            signed_config(admin, [admin_key], config_bytes(instance.url, dev_pki, 2, "80"), version=2)
            done = run_process(*reload)
            assert (done.returncode, done.stdout) == (0, "reloaded: now on config version 2\n"), done.stderr
            elsewhere = run_process(
                "reload", "--config", str(tmp_path / "other.toml"), "--state-dir", str(state_dir)
            )
            assert elsewhere.returncode == 1 and f"uses {config}" in elsewhere.stderr
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    text = log.read_text()
    assert text.count("config reload refused") == 1  # one line per refusal, not one per layer
    assert "the config file is back to the running version 1" in text
