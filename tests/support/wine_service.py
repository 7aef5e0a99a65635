"""A Windows config for the service tests under Wine (paths as the service sees them)."""

from __future__ import annotations

import os

from tests.helpers import NAME, Pki
from tests.support.running import (
    EXPIRES,
)
from tests.windows.conftest import wine_path

SERVICE = f"midbox-test-{os.getpid()}"


def windows_config(url: str, p: Pki) -> bytes:
    """Paths as the service sees them (Wine's drive Z: is the Linux root)."""
    return f"""version = 1
expires = {EXPIRES.strftime("%Y-%m-%dT%H:%M:%SZ")}

[appliance]
name = "{NAME}"

[instance]
url = "{url}"
ca_file = '{wine_path(p.ca.cert)}'
client_cert = '{wine_path(p.client.cert)}'
client_key = '{wine_path(p.client.key)}'
poll_interval_s = 0.2

[[allow]]
cidr = "127.0.0.1/32"
probes = ["http"]
ports = ["1-65535"]
""".encode()
