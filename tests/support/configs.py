"""A complete, valid config text that parse tests vary one field at a time."""

from __future__ import annotations

GOOD = """version = 7
expires = 2027-06-01T00:00:00Z
[appliance]
name = "edge-01"
[instance]
url = "https://acme.service-now.com"
ca_file = "instance-ca.pem"
client_cert = "appliance.crt"
client_key = "appliance.key"
[[allow]]
cidr = "10.20.0.0/24"
probes = ["ssh", "http"]
ports = [22, 443, "8000-8100"]
credentials = ["linux-ro"]
"""
