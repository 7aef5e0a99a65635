"""A config with hosts that resolve through a fake DNS, for the systemd unit rendering tests."""

from __future__ import annotations

from pathlib import Path

from appliance.config.model import Config
from tests.support.running import EXPIRES
from tests.support.signed import signed_config

CONFIG = f"""version = 3
expires = {EXPIRES.strftime("%Y-%m-%dT%H:%M:%SZ")}

[appliance]
name = "edge-01"

[instance]
url = "https://acme.service-now.example:8443"
ca_file = "ca.pem"
client_cert = "c.pem"
client_key = "k.pem"
proxy = "http://10.9.9.9:3128"

[[allow]]
cidr = "10.20.0.0/24"
probes = ["ssh"]
ports = [22]

[[allow]]
host = "db1.corp.example"
probes = ["http"]
ports = [443]
"""


FAKE_DNS = {"acme.service-now.example": ["203.0.113.7"], "db1.corp.example": ["10.30.0.5", "10.30.0.6"]}


def config() -> Config:
    return signed_config(CONFIG, Path("/etc/midbox/midbox.toml"), signer="admin")
