"""Signed checkpoints: (log id, entry count, head hash, time), carried as an ECC input payload.

The payload is what the appliance posts with topic ``midbox.audit.checkpoint`` and what
``midbox audit checkpoint --out FILE`` writes for sites without an instance:
``<results probe_time="0" result_code="0"><result><checkpoint log_id=".." size=".." head=".."
time=".." key_id=".." signature=".."/></result></results>``.
"""

from __future__ import annotations

import base64
import binascii
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hardening.audit.errors import CheckpointError
from hardening.audit.signing import key_id, verify_signature

TOPIC = "midbox.audit.checkpoint"
MAX_CHECKPOINT_BYTES = 8_192
_DOMAIN = b"midbox.audit.checkpoint.v1\n"
_ATTRS = ("log_id", "size", "head", "time", "key_id", "signature")
_PATTERNS = {
    "log_id": re.compile(r"[0-9a-f]{32}"),
    "size": re.compile(r"[1-9][0-9]{0,18}"),
    "head": re.compile(r"[0-9a-f]{64}"),
    # re.ASCII: in a str pattern \d also matches non-ASCII digits, which the signed message cannot hold.
    "time": re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", re.ASCII),
    "key_id": re.compile(r"[0-9a-f]{32}"),
    "signature": re.compile(r"[A-Za-z0-9+/]{86}=="),
}


def _message(log_id: str, size: int, head: str, time: str) -> bytes:
    return _DOMAIN + f"{log_id}\n{size}\n{head}\n{time}\n".encode("ascii")


@dataclass(frozen=True)
class UnverifiedCheckpoint:
    """A checkpoint as read from a file or the instance; nothing in it is trusted yet."""

    log_id: str
    size: int
    head: str
    time: str
    key_id: str
    signature: bytes


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint whose signature verified under the given public key."""

    log_id: str
    size: int
    head: str
    time: str
    key_id: str
    signature: bytes

    @property
    def last_seq(self) -> int:
        return self.size - 1


def sign_checkpoint(key: Ed25519PrivateKey, log_id: str, size: int, head: str, time: str) -> Checkpoint:
    signature = key.sign(_message(log_id, size, head, time))
    return Checkpoint(log_id, size, head, time, key_id(key.public_key()), signature)


def verify_checkpoint(unverified: UnverifiedCheckpoint, public_key: Ed25519PublicKey) -> Checkpoint:
    # 1. The checkpoint names the key we were given (else the caller has the wrong public key).
    if unverified.key_id != key_id(public_key):
        raise CheckpointError(
            f"checkpoint of {unverified.time} was signed by key {unverified.key_id}, not by "
            f"{key_id(public_key)}; pass the appliance's public key with --pubkey"
        )
    # 2. The signature covers exactly the fields we will use.
    message = _message(unverified.log_id, unverified.size, unverified.head, unverified.time)
    if not verify_signature(public_key, unverified.signature, message):
        raise CheckpointError(
            f"checkpoint of {unverified.time}: the signature does not verify; it was altered"
        )
    return Checkpoint(
        unverified.log_id,
        unverified.size,
        unverified.head,
        unverified.time,
        unverified.key_id,
        unverified.signature,
    )


def checkpoint_xml(cp: Checkpoint) -> bytes:
    """The ECC input payload for topic ``midbox.audit.checkpoint``."""
    results = ET.Element("results", {"probe_time": "0", "result_code": "0"})
    result = ET.SubElement(results, "result")
    ET.SubElement(
        result,
        "checkpoint",
        {
            "log_id": cp.log_id,
            "size": str(cp.size),
            "head": cp.head,
            "time": cp.time,
            "key_id": cp.key_id,
            "signature": base64.b64encode(cp.signature).decode("ascii"),
        },
    )
    data: bytes = ET.tostring(results, encoding="utf-8", xml_declaration=False)
    return data + b"\n"


def _only_child(element: ET.Element, tag: str) -> ET.Element:
    children = list(element)
    if len(children) != 1 or children[0].tag != tag:
        raise CheckpointError(f"<{element.tag}> must hold exactly one <{tag}>")
    if (element.text or "").strip() or (children[0].tail or "").strip():
        raise CheckpointError(f"<{element.tag}> must not hold text")
    return children[0]


# What the appliance adds to a checkpoint it posts to the instance (see EccClient.post_input).
_ENVELOPE_PARAMETERS = {"skip_sensor": "true"}


def _drop_envelope_parameters(root: ET.Element) -> None:
    """Remove a trailing ``<parameters>`` holding only the envelope's own parameters; anything else
    stays and is refused by the strict parse that follows."""
    children = list(root)
    if len(children) != 2 or children[1].tag != "parameters" or (children[1].text or "").strip():
        return
    params = children[1]
    seen = {}
    for p in params:
        if p.tag != "parameter" or set(p.attrib) != {"name", "value"} or list(p) or (p.tail or "").strip():
            return
        seen[p.get("name")] = p.get("value")
    if seen and all(_ENVELOPE_PARAMETERS.get(str(k)) == v for k, v in seen.items()):
        children[0].tail = None
        root.remove(params)


def parse_checkpoint_xml(data: bytes) -> UnverifiedCheckpoint:
    """Size first, then a strict parse: known elements and attributes only, each of the right shape."""
    import defusedxml.ElementTree as DET
    from defusedxml import DefusedXmlException

    if len(data) > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(
            f"a checkpoint is at most {MAX_CHECKPOINT_BYTES} bytes; this one is {len(data)}"
        )
    try:
        root = DET.fromstring(data)
    # LookupError: expat looks up the encoding an XML declaration names, e.g. encoding="utv-16".
    except (ET.ParseError, DefusedXmlException, ValueError, LookupError) as e:
        raise CheckpointError("the checkpoint is not well-formed XML") from e
    if root.tag != "results" or dict(root.attrib) != {"probe_time": "0", "result_code": "0"}:
        raise CheckpointError('a checkpoint payload is <results probe_time="0" result_code="0">')
    _drop_envelope_parameters(root)
    element = _only_child(_only_child(root, "result"), "checkpoint")
    if list(element) or (element.text or "").strip():
        raise CheckpointError("<checkpoint> must be empty")
    attrs = dict(element.attrib)
    unknown = sorted(set(attrs) - set(_ATTRS))
    missing = sorted(set(_ATTRS) - set(attrs))
    if unknown or missing:
        raise CheckpointError(f"<checkpoint> attributes: unknown {unknown}, missing {missing}")
    for name in _ATTRS:
        if not _PATTERNS[name].fullmatch(attrs[name]):
            raise CheckpointError(f"<checkpoint> attribute {name!r} is malformed")
    try:
        signature = base64.b64decode(attrs["signature"], validate=True)
    except binascii.Error as e:
        raise CheckpointError("<checkpoint> signature is not base64") from e
    return UnverifiedCheckpoint(
        attrs["log_id"], int(attrs["size"]), attrs["head"], attrs["time"], attrs["key_id"], signature
    )
