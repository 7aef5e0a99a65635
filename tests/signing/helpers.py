"""Make signed configs and trust roots in a directory in one call (tests and demos).

``make_signed_setup(tmp)`` gives an admin workstation directory (keys, config, .sig) and an
appliance state directory (pinned trust root), as two machines would have them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hardening.signing.envelope import sign_config_bytes
from hardening.signing.keys import generate, private_key_file, public_pem
from hardening.signing.rollback import install_initial_root
from hardening.signing.trust import TrustRoot, trusted_key

NOW = dt.datetime(2027, 1, 15, 12, 0, 0, tzinfo=dt.UTC)
EXPIRES = dt.datetime(2027, 6, 1, tzinfo=dt.UTC)
NOT_BEFORE = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


def config_toml(
    name: str = "edge-01", version: int = 7, expires: dt.datetime = EXPIRES, extra: str = ""
) -> bytes:
    return f"""version = {version}
expires = {expires.strftime("%Y-%m-%dT%H:%M:%SZ")}

[appliance]
name = "{name}"

[instance]
url = "https://acme.service-now.com"
ca_file = "instance-ca.pem"
client_cert = "appliance.crt"
client_key = "appliance.key"

[[allow]]
cidr = "127.0.0.0/8"
probes = ["ssh", "tcp"]
ports = [22, "8000-8100"]
credentials = ["linux-ro"]
{extra}""".encode()


def write_signed_config(
    directory: Path,
    signers: Sequence[Ed25519PrivateKey],
    data: bytes | None = None,
    *,
    name: str = "edge-01",
    version: int = 7,
    expires: dt.datetime = EXPIRES,
    not_before: dt.datetime = NOT_BEFORE,
    filename: str = "midbox.toml",
) -> Path:
    """Write ``filename`` and ``filename.sig`` signed by each of ``signers`` in turn (co-signing)."""
    directory.mkdir(parents=True, exist_ok=True)
    data = config_toml(name, version, expires) if data is None else data
    path = directory / filename
    path.write_bytes(data)
    envelope: bytes | None = None
    for key in signers:
        envelope = sign_config_bytes(
            data,
            key,
            appliance=name,
            version=version,
            expires=expires,
            not_before=not_before,
            existing=envelope,
        )
    sig = path.with_name(filename + ".sig")
    if envelope is None:
        sig.unlink(missing_ok=True)
    else:
        sig.write_bytes(envelope)
    return path


def install_trust(
    state_dir: Path, keys: Sequence[Ed25519PrivateKey], threshold: int = 1, appliance_name: str | None = None
) -> TrustRoot:
    state_dir.mkdir(parents=True, exist_ok=True)
    trusted = tuple(trusted_key(k.public_key(), f"admin{i}") for i, k in enumerate(keys))
    root = TrustRoot(1, threshold, trusted)
    install_initial_root(state_dir, root, appliance_name)
    return root


@dataclass(frozen=True)
class SignedSetup:
    workstation: Path
    state_dir: Path
    config: Path
    keys: tuple[Ed25519PrivateKey, ...]


def make_signed_setup(
    base: Path, *, admins: int = 1, threshold: int = 1, name: str = "edge-01", version: int = 7
) -> SignedSetup:
    """Admin keys (written unencrypted as NAME.key/NAME.pub), a config signed by ``threshold`` of them,
    and an appliance state dir whose trust root holds all of them."""
    workstation = base / "workstation"
    workstation.mkdir(parents=True, exist_ok=True)
    keys = tuple(generate() for _ in range(admins))
    for i, k in enumerate(keys):
        (workstation / f"admin{i}.key").write_bytes(private_key_file(k, None))
        (workstation / f"admin{i}.pub").write_bytes(public_pem(k.public_key()))
    config = write_signed_config(workstation, keys[:threshold], name=name, version=version)
    state_dir = base / "appliance-state"
    install_trust(state_dir, keys, threshold)
    return SignedSetup(workstation, state_dir, config, keys)
