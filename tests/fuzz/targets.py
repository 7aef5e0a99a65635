"""Fuzz targets: ``target(data: bytes) -> None`` succeeds or raises only the parser's declared error.

Each target catches exactly the error type its parser documents; anything else escaping (another
exception, an assertion on a post-condition) is a finding. Targets that need files (the credential
store, the audit log) write into one scratch directory owned by ``Targets``, so a run makes no
other file-system state and nothing of this machine leaks into the corpus.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.config import parse_config
from appliance.dispatch import rerun_safe
from appliance.errors import ConfigError, InstanceError, PayloadError
from appliance.limits import MAX_PAYLOAD_BYTES
from appliance.payload import parse_parameters
from appliance.probes.http import HttpProbe
from appliance.probes.snmp.ber import REPORT, V1, BerError, decode_response
from appliance.probes.snmp.usm import UsmKeys, decode_message
from appliance.probes.ssh import SshProbe
from appliance.queue.records import parse_output
from hardening.audit import _entry
from hardening.audit.checkpoint import Checkpoint, parse_checkpoint_xml, verify_checkpoint
from hardening.audit.errors import AuditError, CheckpointError
from hardening.audit.seal import parse_verification_key
from hardening.audit.verify import verify_log
from hardening.known_hosts import KnownHostsError, parse_known_hosts, parse_public_key_file
from hardening.sealedlog import SealedEntryError, SealedLog
from hardening.signing.envelope import parse_envelope
from hardening.signing.errors import EnvelopeError, SigningError, TrustRootError
from hardening.signing.trust import TrustRoot, parse, serialize, trusted_key
from hardening.signing.verify import ConfigSignatureCheck
from hardening.vault import KeySource, VaultPaths
from hardening.vault.errors import VaultError
from hardening.vault.format import HEADER_BYTES, MAC_BYTES, FormatError, parse_header, parse_records
from hardening.vault.store import open_store

# Fixed test keys: the corpus is reproducible and these keys protect nothing.
ADMIN_KEYS = tuple(Ed25519PrivateKey.from_private_bytes(bytes([i]) * 32) for i in (1, 2))
CHECKPOINT_KEY = Ed25519PrivateKey.from_private_bytes(bytes([3]) * 32)
VAULT_HOST_KEY = bytes(range(32))
SEALED_LOG_KEY = bytes(range(32, 64))
APPLIANCE = "edge-01"
NOW = dt.datetime(2027, 1, 15, 12, 0, 0, tzinfo=dt.UTC)
SIGNED_CONFIG = b'version = 7\nexpires = 2027-06-01T00:00:00Z\n[appliance]\nname = "edge-01"\n'
# The audit_log input: header lines, a blank line, then the log's files separated by this byte.
AUDIT_FILE_SEPARATOR = b"\x1e"
_SYS_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_KEY_ID = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
SNMP_KEYS = UsmKeys(b"monitor", "SHA-256", bytes(range(32)), bytes(range(16)))  # localised, fixed


def trust_root() -> TrustRoot:
    keys = tuple(trusted_key(k.public_key(), f"admin{i}") for i, k in enumerate(ADMIN_KEYS, 1))
    return TrustRoot(version=1, threshold=2, keys=keys)


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    checks: str  # one line for the README and --list


# -- pure parsers ----------------------------------------------------------------------------------


def ecc_payload(data: bytes) -> None:
    # The payload arrives as a JSON string, which may hold any code point, lone surrogates included.
    text = data.decode("utf-8", "surrogateescape")
    try:
        params = parse_parameters(text, MAX_PAYLOAD_BYTES)
    except PayloadError:
        return
    names = [n for n, _ in params]
    assert len(set(names)) == len(names) and all(names)
    assert all(isinstance(v, str) for _, v in params)


def ecc_record(data: bytes) -> None:
    # The JSON layer is httpx's; ours starts at the decoded row. Undecodable JSON is not our input.
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        return
    rows = body.get("result") if isinstance(body, dict) and "result" in body else [body]
    if not isinstance(rows, list):
        rows = [rows]
    for row in rows:
        try:
            record = parse_output(row)
        except InstanceError:
            continue
        # sys_ids become file names in the outbox and terms of encoded queries: nothing else may pass.
        assert _SYS_ID.fullmatch(record.sys_id), record.sys_id
        # Crash recovery classifies every record it finds in processing; that must never raise.
        rerun_safe(record, {"RESTProbe": HttpProbe(), "SSHCommand": SshProbe()})


def config_toml(data: bytes) -> None:
    with contextlib.suppress(ConfigError):
        parse_config(data, Path("midbox.toml"))


def config_signature(data: bytes) -> None:
    """The envelope parser, then the whole ordered check against a fixed two-key trust root."""
    try:
        env = parse_envelope(data)
    except EnvelopeError:
        return
    # Hex fields are exactly their digits: no second spelling of the same key id or hash.
    assert _HEX64.fullmatch(env.statement.sha256) and all(_KEY_ID.fullmatch(s.key_id) for s in env.signatures)
    check = ConfigSignatureCheck(
        trust=trust_root(), state=None, now=NOW, expected_name=APPLIANCE, max_config_bytes=1_000_000
    )
    with contextlib.suppress(SigningError):
        verified = check.run_all(SIGNED_CONFIG, data)
        assert len(verified.signers) >= 2


def trust_file(data: bytes) -> None:
    try:
        root, sigs = parse(data)
    except TrustRootError:
        return
    # What parses must serialize and parse back to the same root (one reading of a signed document).
    again, sigs2 = parse(serialize(root, sigs))
    assert again.doc() == root.doc() and sigs2 == sigs
    assert all(_KEY_ID.fullmatch(k) for k in (*root.retired, *(s.key_id for s in sigs))), sigs


def known_hosts(data: bytes) -> None:
    try:
        entries = parse_known_hosts(data)
    except KnownHostsError:
        entries = []
    for entry in entries:
        entry.matches("host.example")
        entry.key.fingerprint()
    with contextlib.suppress(KnownHostsError):
        parse_public_key_file(data, source="key.pub")


def audit_entry(data: bytes) -> None:
    try:
        entry = _entry.parse_entry(data)
    except _entry.EntryFormatError:
        return
    assert entry.raw == data and len(entry.prev) == 32 and entry.seq >= 0


def audit_checkpoint(data: bytes) -> None:
    try:
        unverified = parse_checkpoint_xml(data)
    except CheckpointError:
        return
    with contextlib.suppress(CheckpointError):
        verify_checkpoint(unverified, CHECKPOINT_KEY.public_key())


def snmp_message(data: bytes) -> None:
    """An agent's datagram as the v1, v2c and v3 decoders see it; a v3 message that passes is authentic
    under the test keys, or an unauthenticated Report (the only thing accepted without a digest)."""
    with contextlib.suppress(BerError):
        decode_response(data)
    with contextlib.suppress(BerError):
        decode_response(data, V1)
    try:
        message = decode_message(data, SNMP_KEYS)
    except BerError:
        return
    assert message.flags & 1 or message.pdu_tag == REPORT


def vault_format(data: bytes) -> None:
    """Header and records of a store body (checksum already stripped), without the keyed MAC check."""
    try:
        header = parse_header(data)
        parse_records(memoryview(data)[HEADER_BYTES:-MAC_BYTES], header.count)
    except FormatError:
        return


# -- targets that need files -----------------------------------------------------------------------


class Targets:
    """Every target; the file-based ones use ``scratch``, which this object owns and empties."""

    def __init__(self, scratch: Path) -> None:
        self._scratch = scratch
        self._vault = VaultPaths(scratch / "vault")
        self._audit = scratch / "audit"
        self._log = scratch / "log" / "journal.log"
        self.all: dict[str, Target] = {
            t.name: t
            for t in (
                Target(
                    "ecc_payload",
                    ecc_payload,
                    "appliance.payload.parse_parameters: PayloadError only; names unique and non-empty",
                ),
                Target(
                    "ecc_record",
                    ecc_record,
                    "appliance.queue.records.parse_output on each JSON row: "
                    "InstanceError only; a passed sys_id is only [A-Za-z0-9_-]{1,64}; "
                    "dispatch.rerun_safe never raises",
                ),
                Target("config_toml", config_toml, "appliance.config.parse_config: ConfigError only"),
                Target(
                    "config_signature",
                    config_signature,
                    "hardening.signing.envelope.parse_envelope "
                    "(EnvelopeError only), then ConfigSignatureCheck.run_all (SigningError only)",
                ),
                Target(
                    "trust_root",
                    trust_file,
                    "hardening.signing.trust.parse: TrustRootError only; parse(serialize(x)) == x",
                ),
                Target(
                    "known_hosts",
                    known_hosts,
                    "hardening.known_hosts.parse_known_hosts and parse_public_key_file: KnownHostsError only",
                ),
                Target(
                    "audit_entry", audit_entry, "hardening.audit._entry.parse_entry: EntryFormatError only"
                ),
                Target(
                    "audit_log",
                    self.audit_log,
                    "hardening.audit.verify_log over a log directory "
                    "with seal key and checkpoints: returns a verdict, never raises",
                ),
                Target(
                    "audit_checkpoint",
                    audit_checkpoint,
                    "hardening.audit.parse_checkpoint_xml and verify_checkpoint: CheckpointError only",
                ),
                Target(
                    "snmp_message",
                    snmp_message,
                    "appliance.probes.snmp.ber.decode_response and _snmpusm.decode_message: BerError only; "
                    "what passes is authentic or an unauthenticated Report",
                ),
                Target(
                    "vault_format",
                    vault_format,
                    "hardening.vault.format.parse_header + parse_records: FormatError only",
                ),
                Target(
                    "vault_store",
                    self.vault_store,
                    "hardening.vault.open_store on the file's bytes (checksum repaired): VaultError only",
                ),
                Target(
                    "sealed_log",
                    self.sealed_log,
                    "hardening.sealedlog.SealedLog read-only, then writable (torn tail cut, compaction): "
                    "SealedEntryError only; both see the same entries, each authentic",
                ),
            )
        }

    def vault_store(self, data: bytes) -> None:
        """A whole ``credentials.store``: the unkeyed checksum is recomputed, as an attacker can."""
        d = self._vault.state_dir
        if not d.is_dir():
            d.mkdir(mode=0o700, parents=True)
            fd = os.open(self._vault.host_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(VAULT_HOST_KEY)
        body = data[:-32] if len(data) >= 32 else data
        fd = os.open(self._vault.store, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(body + hashlib.sha256(body).digest())
        # Each input is judged alone, not against the generation the previous input left behind.
        self._vault.generation.unlink(missing_ok=True)
        try:
            with open_store(self._vault, KeySource(self._vault.host_key)) as store:
                store.credentials()
        except VaultError:
            return

    def sealed_log(self, data: bytes) -> None:
        """A whole journal log file, opened as another process would (read-only), then as the writer."""
        self._log.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(self._log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            with SealedLog(self._log, SEALED_LOG_KEY, "journal", writable=False) as reader:
                seen = dict(reader.entries())
        except SealedEntryError:
            return
        with SealedLog(self._log, SEALED_LOG_KEY, "journal") as writer:
            assert dict(writer.entries()) == seen
            writer.compact()
            assert dict(writer.entries()) == seen
        with SealedLog(self._log, SEALED_LOG_KEY, "journal", writable=False) as again:
            assert list(again.entries()) == list(seen.items())

    def audit_log(self, data: bytes) -> None:
        """Header lines (``seal <verify key line>``, ``cp <log_id> <size> <head>``), a blank line, then
        the log's files separated by 0x1e. Checkpoints are taken as already verified, so the verifier's
        comparison paths are reached without forging signatures."""
        head, _, body = data.partition(b"\n\n")
        seal = None
        checkpoints: list[Checkpoint] = []
        for line in head.split(b"\n")[:8]:
            if line.startswith(b"seal "):
                with contextlib.suppress(AuditError):
                    seal = parse_verification_key(line[5:])
            elif line.startswith(b"cp "):
                parts = line.split(b" ")
                if len(parts) == 4 and parts[2].isdigit() and len(parts[2]) < 8:
                    t = "2026-11-25T06:00:00.000000Z"
                    checkpoints.append(
                        Checkpoint(
                            parts[1].decode("latin-1"),
                            int(parts[2]),
                            parts[3].decode("latin-1"),
                            t,
                            "0" * 32,
                            bytes(64),
                        )
                    )
        if self._audit.exists():
            shutil.rmtree(self._audit)
        self._audit.mkdir(mode=0o700)
        for i, chunk in enumerate(body.split(AUDIT_FILE_SEPARATOR)[:4], 1):
            (self._audit / f"audit-{i:06d}.log").write_bytes(chunk)
        report = verify_log(self._audit, checkpoints, max_entry_bytes=4096, seal_key=seal)
        assert report.ok == (report.seq is None), report
