"""A verified ``Config`` for tests of the runtime, made the one way there is: signed, then verified.

A throwaway admin key signs the text's own name, version and expiry; ``verify_config_bytes`` checks
it against a one-key trust root, so every Config a test runs under has passed the real steps 1-10.
Signature checks themselves have their own tests (tests/signing/).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.config import Config, parse_config
from appliance.config.verify import verify_config_bytes
from hardening.signing.envelope import sign_config_bytes
from hardening.signing.trust import TrustRoot, serialize, trusted_key


def signed_config(text: str | bytes, source: Path, signer: str = "test") -> Config:
    """``text`` (a config for ``source``) signed by one fresh key and verified as of just before it expires."""
    data = text.encode() if isinstance(text, str) else text
    told = parse_config(data, source)  # only to learn what to sign; verification parses again
    names = told.appliance.names
    key = Ed25519PrivateKey.generate()
    now = told.expires - dt.timedelta(minutes=1)
    envelope = sign_config_bytes(
        data,
        key,
        appliance=names[0] if len(names) == 1 else names,
        version=told.version,
        expires=told.expires,
        not_before=now - dt.timedelta(days=365),
    )
    root = TrustRoot(1, 1, (trusted_key(key.public_key(), signer),))
    with tempfile.TemporaryDirectory(prefix="midbox-signed-") as tmp:
        trust_file = Path(tmp) / "trust.json"
        trust_file.write_bytes(serialize(root))
        return verify_config_bytes(
            data, envelope, source, Path(tmp) / "no-state", now, names[0], trust_file=trust_file
        )
