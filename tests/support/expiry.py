"""Configs that expire at a chosen moment, and waiting for that moment."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.helpers import Pki
from tests.signing.helpers import write_signed_config
from tests.support.running import (
    NOT_BEFORE,
    config_bytes,
)


def signed_expiring(
    admin: Path, key: Ed25519PrivateKey, url: str, p: Pki, version: int, expires: dt.datetime
) -> Path:
    body = config_bytes(url, p, version, '"1-65535"').decode()
    lines = [
        f"expires = {expires:%Y-%m-%dT%H:%M:%SZ}" if ln.startswith("expires") else ln
        for ln in body.split("\n")
    ]
    return write_signed_config(
        admin, [key], "\n".join(lines).encode(), version=version, expires=expires, not_before=NOT_BEFORE
    )


def queue_state(store, sys_id: str) -> str:  # type: ignore[no-untyped-def]
    return str(store.get("ecc_queue", sys_id)["state"])


def wait_until(deadline: dt.datetime) -> None:
    time.sleep(max(0.0, (deadline - dt.datetime.now(dt.UTC)).total_seconds()))
