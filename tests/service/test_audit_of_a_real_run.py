"""Tampering with the audit log of a real ``midbox run``, judged against the checkpoint the instance holds.

One real run (signed config, the development instance, HTTP jobs that succeed, are denied and are
refused) writes the log and anchors its head on the instance as it stops. Each test then edits a copy
of that log the way someone with the host's disk could, and ``midbox audit verify`` must name it.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.cli import main as midbox_main
from hardening.audit import (
    Verdict,
    audit_dir,
    load_or_create_signing_key,
    parse_checkpoint_xml,
    verify_checkpoint,
    verify_log,
)
from hardening.audit.checkpoint import Checkpoint
from tests.helpers import AGENT, dev_instance, http_target, make_pki
from tests.signing.helpers import install_trust
from tests.support.running import appliance, config_bytes, http_job, signed_config, wait_answer


class RealRun:
    def __init__(self, state: Path, anchor: Path, client_cert: Path) -> None:
        self.state = state
        self.anchor = anchor
        self.client_cert = client_cert


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> RealRun:
    base = tmp_path_factory.mktemp("real-run")
    state = base / "state"
    state.mkdir(mode=0o700)
    pki = make_pki(base / "pki")
    key = Ed25519PrivateKey.generate()
    install_trust(state, [key])
    with dev_instance(pki, base / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        port = target.rsplit(":", 1)[1]
        config = signed_config(
            base / "admin",
            [key],
            config_bytes(instance.url, pki, 1, port),
            name="edge-01",
        )
        with appliance(config, state, base / "run.log") as proc:
            for url in (f"{target}/hello", "http://169.254.169.254/", f"{target}/hello"):
                wait_answer(store, http_job(store, url))
            [refused] = store.enqueue([{"agent": AGENT, "topic": "Command", "payload": "<parameters/>"}])
            wait_answer(store, refused)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        [anchor_row] = store.query("ecc_queue", "queue=input^topic=midbox.audit.checkpoint")
    anchor = base / "anchor.xml"
    anchor.write_text(anchor_row["payload"])
    return RealRun(state, anchor, Path(pki.client.cert))


def copy_of(run: RealRun, tmp_path: Path) -> tuple[Path, Checkpoint]:
    state = tmp_path / "state"
    shutil.copytree(run.state, state)
    public = load_or_create_signing_key(run.state).public_key()
    checkpoint = verify_checkpoint(parse_checkpoint_xml(run.anchor.read_bytes()), public)
    return state, checkpoint


def segment(state: Path) -> Path:
    [only] = sorted(audit_dir(state).glob("audit-*.log"))
    return only


def lines(state: Path) -> list[bytes]:
    return segment(state).read_bytes().splitlines(keepends=True)


def seq_of(state: Path, event: str, nth: int = 0) -> int:
    found = [json.loads(line)["seq"] for line in lines(state) if json.loads(line)["event"] == event]
    return int(found[nth])


def judged(state: Path, checkpoint: Checkpoint) -> tuple[Verdict, int | None]:
    report = verify_log(audit_dir(state), [checkpoint])
    return report.verdict, report.seq


def test_the_real_log_is_intact_against_the_instance_checkpoint(real_run: RealRun, tmp_path: Path) -> None:
    state, checkpoint = copy_of(real_run, tmp_path)
    assert judged(state, checkpoint) == (Verdict.INTACT, None)
    events = [json.loads(line)["event"] for line in lines(state)]
    for event in ("config.accepted", "appliance.start", "probe.finished", "target.denied", "topic.refused"):
        assert event in events
    # The start names the client certificate the run presented (the identity that did the work).
    start = next(json.loads(line) for line in lines(state) if json.loads(line)["event"] == "appliance.start")
    leaf = x509.load_pem_x509_certificate(real_run.client_cert.read_bytes())
    assert start["fields"]["client_cert_sha256"] == leaf.fingerprint(hashes.SHA256()).hex()
    # The CLI says the same, with exit 0.
    assert (
        midbox_main(["audit", "verify", "--state-dir", str(state), "--checkpoint", str(real_run.anchor)]) == 0
    )


def test_the_final_checkpoint_covers_the_stop_entry(real_run: RealRun, tmp_path: Path) -> None:
    state, checkpoint = copy_of(real_run, tmp_path)
    stop = seq_of(state, "appliance.stop")
    assert checkpoint.size > stop  # the run's last word is anchored on the instance too
    body = lines(state)
    segment(state).write_bytes(b"".join(body[:stop]))  # cut the stop (and what follows) cleanly
    assert judged(state, checkpoint) == (Verdict.TRUNCATED, stop)


def test_a_failed_run_made_to_look_successful_is_tampered(real_run: RealRun, tmp_path: Path) -> None:
    state, checkpoint = copy_of(real_run, tmp_path)
    body = lines(state)
    target = next(i for i, line in enumerate(body) if b'"result_code":1' in line)
    body[target] = body[target].replace(b'"result_code":1', b'"result_code":0')
    segment(state).write_bytes(b"".join(body))
    assert judged(state, checkpoint) == (Verdict.TAMPERED, target)


def test_a_deleted_denial_is_missing(real_run: RealRun, tmp_path: Path) -> None:
    state, checkpoint = copy_of(real_run, tmp_path)
    denied = seq_of(state, "target.denied")
    body = lines(state)
    segment(state).write_bytes(b"".join(body[:denied] + body[denied + 1 :]))
    assert judged(state, checkpoint) == (Verdict.MISSING, denied)


def test_swapped_entries_are_reordered(real_run: RealRun, tmp_path: Path) -> None:
    state, checkpoint = copy_of(real_run, tmp_path)
    body = lines(state)
    i = seq_of(state, "job.claimed")
    body[i], body[i + 1] = body[i + 1], body[i]
    segment(state).write_bytes(b"".join(body))
    assert judged(state, checkpoint) == (Verdict.REORDERED, i)


def test_a_cut_tail_is_truncated_against_the_instance_checkpoint(real_run: RealRun, tmp_path: Path) -> None:
    state, checkpoint = copy_of(real_run, tmp_path)
    body = lines(state)
    keep = seq_of(state, "topic.refused")
    segment(state).write_bytes(b"".join(body[:keep]))
    # Without the checkpoint the shortened log looks whole; the instance's copy says otherwise.
    assert verify_log(audit_dir(state), []).verdict is Verdict.INTACT
    assert judged(state, checkpoint) == (Verdict.TRUNCATED, keep)


def test_a_deleted_log_is_caught_by_the_instance_checkpoint(real_run: RealRun, tmp_path: Path) -> None:
    state, checkpoint = copy_of(real_run, tmp_path)
    shutil.rmtree(audit_dir(state))
    audit_dir(state).mkdir(mode=0o700)
    assert judged(state, checkpoint) == (Verdict.TRUNCATED, 0)
    code = midbox_main(["audit", "verify", "--state-dir", str(state), "--checkpoint", str(real_run.anchor)])
    assert code == 1
