"""``midbox config example --name NAME``: an annotated config that parses, signs and verifies as printed.

Every key the parser accepts appears, set or commented out with its default, so the template is also a
checklist. It expires 90 days after it is printed: sign it before then, or edit ``expires``.
"""

from __future__ import annotations

import datetime as dt

EXAMPLE_VALIDITY = dt.timedelta(days=90)

TEMPLATE = """\
# midbox config for appliance {name}. Reference: docs/config.md. Paths are relative to this file.
# Edit, then sign on the admin workstation:  midbox config sign midbox.toml --key ADMIN.key
# and check it on the appliance:             midbox config verify /etc/midbox/midbox.toml
version = 1                          # raise it with every change; an older one is refused
expires = {expires}    # unquoted TOML date-time with a zone; the appliance refuses the config after it

[appliance]
name = "{name}"                      # the ECC agent is mid.server.{name}; the signature binds to it
# names = ["{name}", "edge-02"]      # instead of name: one signed config for a fleet (docs/config.md)
# max_concurrent_probes = 64         # 1..1024
# max_job_age_s = 86400              # older output records are refused (replay protection)
# target_rate_per_s = 10             # per target address: new jobs a second ...
# target_burst = 20                  # ... after a burst of this many
# target_concurrency = 4             # ... and this many at once
# breaker_failures = 5               # failures in a row that leave a target alone ...
# breaker_cooldown_s = 60            # ... for this long (doubling up to 900 s)

[instance]
url = "https://example.service-now.com"   # your instance; https only
ca_file = "instance-ca.pem"          # the CA that issued the instance's TLS certificate
client_cert = "appliance.crt"        # from 'midbox enroll --name {name}', signed by your CA
client_key = "appliance.key"
# poll_interval_s = 5                # 0.05..3600
# use_system_trust = false           # also trust this host's CA store for the instance
# proxy = "http://proxy.example:3128"    # HTTP CONNECT proxy; TLS stays end to end
# basic_auth_credential = "instance"     # an http-basic alias, for instances without mutual TLS

# Deny by default: a probe runs only if a rule allows its probe kind, target address and port.
[[allow]]                            # rule 1
cidr = "192.0.2.0/24"                # networks (host bits zero); or host = "db1.example" (or both)
probes = ["ssh", "snmp", "tcp"]      # ssh, snmp, http, tcp
ports = [22, 161, "1-1024"]          # numbers or "low-high" ranges
credentials = ["linux-ro", "snmp-ro"]    # aliases from 'midbox creds add', tried in this order
# sudo = false                       # ssh: let jobs with must_sudo=true use sudo
# host_keys = "pinned"               # ssh: or "pin-on-first-use"
# snmp_v1 = false                    # snmp: allow SNMPv1
# rate_per_s = 50                    # jobs a second this rule decides (all its targets) ...
# burst = 100                        # ... after a burst of this many
# max_concurrent = 32                # ... and this many at once
# commands = ["uname -a", "ip -o addr show dev {{iface:iface}}"]   # ssh: only these (docs/policy.md)
# oids = ["system", "interfaces", "ip"]  # snmp: only these subtrees (SET is never allowed)

# [[allow]]                          # rule 2: HTTPS to one host, verified against its own CA
# host = "app.example"
# resolves_within = ["198.51.100.0/24"]  # the networks the name may resolve into (DNS is not trusted)
# probes = ["http"]
# ports = [443]
# credentials = ["app-api"]
# tls_ca = "internal-ca.pem"
# methods = ["GET", "HEAD"]          # http: only these methods ...
# paths = ["/api/v1/status", "/redfish/v1/**"]   # ... and paths ('/**': everything below)

# Real Discovery probes name a discovery_credentials sys_id or a tag, never a local alias:
# [credential_map.ids]
# "0123456789abcdef0123456789abcdef" = "linux-ro"
# [credential_map.tags]
# linux = ["linux-ro"]

# 'midbox config sign' adds a [files] table here with the SHA-256 of each CA file named above
# (instance.ca_file, tls_ca); keep it last. ("instance-ca.pem" = "<64 hex digits>")
"""


def example_config(name: str, now: dt.datetime) -> str:
    expires = (now + EXAMPLE_VALIDITY).replace(hour=0, minute=0, second=0, microsecond=0)
    return TEMPLATE.format(name=name, expires=expires.strftime("%Y-%m-%dT%H:%M:%SZ"))
