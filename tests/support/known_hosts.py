"""Host keys for known_hosts tests."""

from __future__ import annotations

import base64
import struct

from hardening.known_hosts import (
    HostKey,
)


def key(kind: str = "ssh-ed25519", fill: bytes = b"A") -> HostKey:
    blob = struct.pack(">I", len(kind)) + kind.encode() + struct.pack(">I", 32) + fill * 32
    return HostKey(kind, blob)


def b64(k: HostKey) -> str:
    return base64.b64encode(k.blob).decode()
