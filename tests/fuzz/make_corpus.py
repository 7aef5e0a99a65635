"""Write the seed corpus with the real writers: ``python -m tests.fuzz.make_corpus [--out DIR]``.

Seeds are valid inputs plus a few near-valid ones (one field wrong), so mutations start next to the
interesting branches. Keys are the fixed test keys of ``targets``; stores and logs carry random ids
and nonces, so a regenerated corpus differs in those bytes but not in shape. Written files never
hold a path of the machine that made them.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hardening.audit import AuditLog, AuditOptions, checkpoint_xml, sign_checkpoint
from hardening.audit._files import log_files
from hardening.audit.seal import SEAL_VERIFY_FILE
from hardening.sealedlog import Compaction, SealedLog
from hardening.signing.envelope import sign_config_bytes
from hardening.signing.keys import raw_public
from hardening.signing.trust import propose, serialize, sign_root, trusted_key
from hardening.vault import CredentialMeta, KeySource, Secret, VaultPaths, edit_store
from tests.fuzz import targets as T

CORPUS = Path(__file__).parent / "corpus"
EXPIRES = dt.datetime(2027, 6, 1, tzinfo=dt.UTC)
NOT_BEFORE = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)

CONFIG = b"""version = 7
expires = 2027-06-01T00:00:00Z

[appliance]
name = "edge-01"
max_concurrent_probes = 16

[instance]
url = "https://acme.service-now.com"
ca_file = "instance-ca.pem"
client_cert = "appliance.crt"
client_key = "appliance.key"
poll_interval_s = 2.5

[[allow]]
cidr = "127.0.0.0/8"
probes = ["ssh", "tcp"]
ports = [22, "8000-8100"]
credentials = ["linux-ro"]

[[allow]]
host = ["db1.example.net", "db2.example.net."]
cidr = ["10.0.0.0/24", "fd00::/64"]
probes = "snmp"
ports = [161]
"""


def payloads() -> Iterator[tuple[str, bytes]]:
    yield (
        "params",
        b'<parameters><parameter name="command" value="uname -a"/><parameter name="port" value="22"/></parameters>',
    )
    yield "text-value", b'<parameters><parameter name="body">a &amp; b &lt;c&gt;</parameter></parameters>'
    yield "unicode", '<parameters><parameter name="n\u00e9" value="\u2603 \U0001f600"/></parameters>'.encode()
    yield "empty", b"<parameters/>"
    yield (
        "declared",
        b'<?xml version="1.0" encoding="UTF-8"?><parameters><parameter name="a" value=""/></parameters>',
    )
    yield (
        "duplicate",
        b'<parameters><parameter name="a" value="1"/><parameter name="a" value="2"/></parameters>',
    )
    yield "nested", b"<parameters>" + b"<x>" * 40 + b"</x>" * 40 + b"</parameters>"
    yield (
        "doctype",
        b'<!DOCTYPE p [<!ENTITY e "x">]><parameters><parameter name="a" value="&e;"/></parameters>',
    )
    yield "ns", b'<p:parameters xmlns:p="urn:x"><p:parameter name="a" value="b"/></p:parameters>'


def records() -> Iterator[tuple[str, bytes]]:
    row = {
        "sys_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "agent": "mid.server.edge-01",
        "topic": "SSHCommand",
        "name": "uname -a",
        "source": "10.0.0.5",
        "payload": '<parameters><parameter name="port" value="22"/></parameters>',
        "queue": "output",
        "state": "ready",
        "response_to": "",
        "agent_correlator": "corr-1",
        "priority": "1",
        "sequence": "18c1a2b3c4d",
        "sys_created_on": "2026-11-25 06:00:00",
    }
    yield "table-response", json.dumps({"result": [row]}).encode()
    yield "single-row", json.dumps(row).encode()
    ref = dict(row, agent={"value": "mid.server.edge-01", "link": "https://acme.service-now.com/x"})
    yield "reference-field", json.dumps({"result": [ref, dict(row, sys_id="abc_DEF-123")]}).encode()
    yield "bad-sys-id", json.dumps({"result": [dict(row, sys_id="a b")]}).encode()
    yield "types", json.dumps({"result": [dict(row, priority=2, sequence=None, payload=["x"])]}).encode()


def signatures() -> Iterator[tuple[str, bytes]]:
    one = sign_config_bytes(
        T.SIGNED_CONFIG,
        T.ADMIN_KEYS[0],
        appliance=T.APPLIANCE,
        version=7,
        expires=EXPIRES,
        not_before=NOT_BEFORE,
    )
    both = sign_config_bytes(
        T.SIGNED_CONFIG,
        T.ADMIN_KEYS[1],
        appliance=T.APPLIANCE,
        version=7,
        expires=EXPIRES,
        not_before=NOT_BEFORE,
        existing=one,
    )
    yield "two-signers", both
    yield "one-signer", one
    other = sign_config_bytes(
        CONFIG, T.ADMIN_KEYS[0], appliance=T.APPLIANCE, version=7, expires=EXPIRES, not_before=NOT_BEFORE
    )
    yield "other-bytes", other
    yield "duplicate-field", both.replace(b'{"appliance"', b'{"version":8,"appliance"', 1)


def trust_files() -> Iterator[tuple[str, bytes]]:
    root = T.trust_root()
    yield "initial", serialize(root)
    third = Ed25519PrivateKey.from_private_bytes(bytes([4]) * 32)
    keys = (*root.keys[:1], trusted_key(third.public_key(), "admin3"))
    proposed = serialize(propose(root, keys, 2))
    for key in T.ADMIN_KEYS:
        proposed = sign_root(proposed, key)
    yield "rotation-signed", proposed
    yield "trailing-data", serialize(root) + b"{}"


def snmp_messages() -> Iterator[tuple[str, bytes]]:
    from appliance.probes.snmp.ber import REPORT, RESPONSE, encode_pdu, integer, tlv
    from appliance.probes.snmp.usm import Engine, encode_discovery, encode_message

    sys_descr = (1, 3, 6, 1, 2, 1, 1, 1, 0)
    v2c_pdu = encode_pdu(RESPONSE, 7, (sys_descr,))
    yield "v2c-response", tlv(0x30, integer(1) + tlv(0x04, b"public") + v2c_pdu)
    engine = Engine(b"\x80\x00\x1f\x88\x80midbox", 3, 1234)
    reply = encode_pdu(RESPONSE, 8, (sys_descr, (1, 3, 6, 1, 2, 1, 1, 3, 0)))
    v3 = encode_message(9, T.SNMP_KEYS, engine, reply, b"", b"saltsalt")
    yield "v3-authpriv-response", v3
    yield "v3-wrong-digest", v3[:-40] + bytes([v3[-40] ^ 1]) + v3[-39:]
    yield (
        "v3-discovery-report",
        encode_discovery(10, encode_pdu(REPORT, 0, ((1, 3, 6, 1, 6, 3, 15, 1, 1, 4, 0),))),
    )


def _ssh_string(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def known_hosts() -> Iterator[tuple[str, bytes]]:
    blob = _ssh_string(b"ssh-ed25519") + _ssh_string(raw_public(T.ADMIN_KEYS[0].public_key()))
    b64 = base64.b64encode(blob).decode()
    ec = base64.b64encode(_ssh_string(b"ecdsa-sha2-nistp256") + _ssh_string(b"nistp256") + bytes(65)).decode()
    hashed = "|1|" + base64.b64encode(bytes(20)).decode() + "|" + base64.b64encode(bytes(range(20))).decode()
    text = (
        f"# pinned by midbox\nhost.example ssh-ed25519 {b64}\n[10.0.0.5]:2222,10.0.0.6 ssh-ed25519 {b64} c\n"
        f"{hashed} ecdsa-sha2-nistp256 {ec}\n"
    )
    yield "pins", text.encode()
    yield "public-key", f"ssh-ed25519 {b64} admin@laptop\n".encode()
    yield "marker", f"@cert-authority *.example ssh-ed25519 {b64}\n".encode()
    yield "type-mismatch", f"host.example ssh-rsa {b64}\n".encode()


def _clock() -> Iterator[dt.datetime]:
    t = dt.datetime(2026, 11, 25, 6, 0, tzinfo=dt.UTC)
    while True:
        t += dt.timedelta(seconds=1)
        yield t


def audit(tmp: Path) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    d = tmp / "audit"
    ticks = _clock()
    opts = AuditOptions(max_entry_bytes=4096, rotate_bytes=8192, seal_every_entries=6)
    log = AuditLog(d, opts, clock=lambda: next(ticks))
    for i in range(30):
        log.record(
            "probe.finished",
            {
                "job": f"job{i:04d}",
                "topic": "SSHCommand",
                "target": f"10.0.0.{i + 1}",
                "port": 22,
                "credential": "linux-ro",
                "result_code": i % 2,
                "bytes_in": 100 + i,
                "bytes_out": 2000,
                "duration_ms": 10.5 + i,
                "result_sha256": f"{i:064x}",
            },
        )
        if i == 20:
            cp = log.checkpoint(T.CHECKPOINT_KEY)
    log.close()
    files = [p.read_bytes() for _, p in log_files(d)]
    verify_line = (d / SEAL_VERIFY_FILE).read_bytes().strip()
    header = b"seal " + verify_line + b"\n" + f"cp {cp.log_id} {cp.size} {cp.head}".encode() + b"\n\n"
    whole = T.AUDIT_FILE_SEPARATOR.join(files)
    lines = b"".join(files).splitlines()
    log_seeds = [
        ("sealed-checkpointed", header + whole),
        ("unsealed", b"\n" + whole),
        ("torn-tail", header + whole[:-40]),
        ("short", b"seal " + verify_line + b"\n\n" + b"\n".join(lines[:3]) + b"\n"),
    ]
    entries = [
        ("genesis", lines[0]),
        ("probe", lines[1]),
        ("seal", next(x for x in lines if b"audit.seal" in x)),
    ]
    entries.append(("checkpoint-entry", next(x for x in lines if b"audit.checkpoint" in x)))
    signed = sign_checkpoint(T.CHECKPOINT_KEY, cp.log_id, cp.size, cp.head, cp.time)
    xml = checkpoint_xml(signed)
    cps = [("signed", xml), ("extra-attr", xml.replace(b"<checkpoint ", b'<checkpoint x="1" ', 1))]
    cps.append(("doctype", b'<!DOCTYPE r [<!ENTITY a "b">]>' + xml))
    return log_seeds, entries, cps


def vault(tmp: Path) -> list[tuple[str, bytes]]:
    paths = VaultPaths(tmp / "vault")
    paths.state_dir.mkdir(mode=0o700)
    paths.host_key.write_bytes(T.VAULT_HOST_KEY)
    paths.host_key.chmod(0o600)
    source = KeySource(paths.host_key)
    out = []
    with edit_store(paths, source, create=True) as draft:
        draft.put(CredentialMeta("web", "http-basic", "admin"), [Secret(b"not-a-real-secret")])
    out.append(("one-record", paths.store.read_bytes()))
    with edit_store(paths, source) as draft:
        draft.put(
            CredentialMeta("linux-ro", "ssh-key", "probe", (("port", "22"), ("note", "fuzz seed"))),
            [Secret(b"-----BEGIN FAKE KEY-----"), Secret(b"passphrase")],
        )
        draft.put(
            CredentialMeta("snmp-core", "snmp-usm", "monitor"), [Secret(b"authpass1"), Secret(b"privpass1")]
        )
        draft.put(CredentialMeta("api", "http-bearer"), [Secret(b"token")])
    out.append(("four-records", paths.store.read_bytes()))
    with edit_store(paths, source) as draft:
        for alias in list(draft.aliases()):
            draft.remove(alias)
    out.append(("empty", paths.store.read_bytes()))
    return out


def sealed_logs(tmp: Path) -> list[tuple[str, bytes]]:
    path = tmp / "log" / "journal.log"
    out = []
    with SealedLog(path, T.SEALED_LOG_KEY, "journal", compaction=Compaction(10**9, 10**12)) as log:
        out.append(("empty", path.read_bytes()))
        log.put(f"{1:032x}", json.dumps({"record": {"sys_id": f"{1:032x}"}, "starts": 1}).encode())
        log.put("b", b"x" * 40)
        log.delete("b")
        log.put("c", b"")
        log.put(f"{1:032x}", b"replaced")
        out.append(("puts-and-deletes", path.read_bytes()))
        out.append(("torn-tail", path.read_bytes()[:-7]))
        log.compact()
        out.append(("compacted", path.read_bytes()))
    return out


def write_corpus(out: Path) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        log_seeds, entries, cps = audit(tmp)
        stores = vault(tmp)
        logs = sealed_logs(tmp)
    seeds: dict[str, list[tuple[str, bytes]]] = {
        "ecc_payload": list(payloads()),
        "ecc_record": list(records()),
        "config_toml": [
            ("full", CONFIG),
            (
                "minimal",
                T.SIGNED_CONFIG + b'[instance]\nurl = "https://a.b"\n'
                b'ca_file = "ca.pem"\nbasic_auth_credential = "svc"\n',
            ),
            ("unknown-key", CONFIG.replace(b"poll_interval_s", b"poll_intervall_s")),
        ],
        "config_signature": list(signatures()),
        "trust_root": list(trust_files()),
        "known_hosts": list(known_hosts()),
        "snmp_message": list(snmp_messages()),
        "audit_entry": entries,
        "audit_log": log_seeds,
        "audit_checkpoint": cps,
        "vault_store": stores,
        # The format target sees the body without its unkeyed checksum trailer.
        "vault_format": [(n, b[:-32]) for n, b in stores],
        "sealed_log": logs,
    }
    counts = {}
    for name, items in seeds.items():
        d = out / name
        if d.exists():
            for old in d.glob("seed-*"):
                old.unlink()
        d.mkdir(parents=True, exist_ok=True)
        for label, data in items:
            (d / f"seed-{label}").write_bytes(data)
        counts[name] = len(items)
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=CORPUS)
    args = ap.parse_args()
    for name, n in write_corpus(args.out).items():
        print(f"{name}: {n} seeds")


if __name__ == "__main__":
    main()
