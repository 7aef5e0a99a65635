"""One ``[[allow]]`` rule of the signed config, and the address vocabulary rules are judged in.

What a rule says (networks, host names, probes, ports, credentials, scopes) and the addresses no rule
reaches by accident (``SPECIAL_BLOCKS``). ``hardening.policy`` judges a job against these rules.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hardening.scopes import Scopes

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

PROBE_KINDS = frozenset({"ssh", "snmp", "http", "tcp"})

# How an SSH rule treats a host key nobody pinned: refuse it, or pin the first one seen (then refuse changes).
HOST_KEY_MODES = frozenset({"pinned", "pin-on-first-use"})

# Addresses a probe must never reach by accident: a rule has to name them with a CIDR inside the block.
SPECIAL_BLOCKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, the cloud metadata address 169.254.169.254 among them
        "224.0.0.0/4",
        "255.255.255.255/32",
        "::/128",
        "::1/128",
        "fe80::/10",
        "ff00::/8",
        "fd00:ec2::254/128",  # the AWS metadata address over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "168.63.129.16/32",  # Azure wire server
    )
)


@dataclass(frozen=True)
class PortRange:
    low: int
    high: int

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port <= self.high


@dataclass(frozen=True)
class AllowRule:
    """One ``[[allow]]`` rule of the signed config: where, which probes, which ports, which credentials."""

    networks: tuple[IPNetwork, ...]
    hosts: tuple[str, ...]
    probes: frozenset[str]
    ports: tuple[PortRange, ...]
    # Ordered: with no credential named by the job, these are tried in this order.
    credentials: tuple[str, ...]
    # HTTPS targets of this rule are verified against this CA file only (else the system's trust store).
    tls_ca: Path | None = None
    # SSH jobs with must_sudo=true may run their command under sudo on this rule's targets.
    sudo: bool = False
    # "pinned": an unknown host key is refused; "pin-on-first-use": the first key seen is pinned.
    host_keys: str = "pinned"
    # SNMPv1 (no protection, coarse errors) only where a rule says so; v2c and v3 are always allowed.
    snmp_v1: bool = False
    # Where the rule's host names may resolve: whoever answers DNS for a name otherwise decides which
    # address the rule's probes and credentials reach. Empty: the name alone matches (warned).
    resolves_within: tuple[IPNetwork, ...] = ()
    # The SHA-256 the signed config pins for ``tls_ca`` (None: not pinned).
    tls_ca_sha256: str | None = None
    # What jobs may do on these targets (commands, OID subtrees, HTTP methods and paths); empty: anything.
    scopes: Scopes = field(default_factory=Scopes)
    line: int | None = None  # of the rule's [[allow]] header in the config, for messages

    def label(self, number: int) -> str:
        return f"rule {number} (line {self.line})" if self.line else f"rule {number}"

    def __post_init__(self) -> None:
        if self.host_keys not in HOST_KEY_MODES:
            raise ValueError(f"host_keys must be one of {sorted(HOST_KEY_MODES)}")

    def matches_target(self, address: IPAddress, hostname: str | None) -> bool:
        if any(address in net for net in self.networks):
            return True
        if hostname is None:
            return False
        return self.names_host(hostname) and (
            not self.resolves_within or any(address in net for net in self.resolves_within)
        )

    def names_host(self, hostname: str | None) -> bool:
        if hostname is None:
            return False
        name = hostname.lower().rstrip(".")
        return any(name == h.lower().rstrip(".") for h in self.hosts)

    def names_explicitly(self, address: IPAddress) -> bool:
        """True if a CIDR of this rule lies inside the special block that holds ``address``."""
        for block in SPECIAL_BLOCKS:
            if address.version == block.version and address in block:
                return any(
                    net.version == block.version and address in net and net.subnet_of(block)  # type: ignore[arg-type]
                    for net in self.networks
                )
        return True


@dataclass(frozen=True)
class CredentialMap:
    """What real probes name (a ``discovery_credentials`` sys_id or a credential tag) → local aliases.

    The instance never sees a secret and never names a local alias: it sends the sys_id or tag it knows,
    and only this signed map turns that into aliases of this host's store. An unmapped name is refused.
    """

    ids: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    tags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def aliases(self, *, credential_id: str | None, credential_tag: str | None) -> tuple[str, ...] | None:
        """The mapped aliases, in order; None when the job names neither; KeyError when unmapped."""
        if credential_id:
            return self.ids[credential_id]
        if credential_tag:
            return self.tags[credential_tag]
        return None


def canonical(address: IPAddress) -> IPAddress:
    """The IPv4 address behind an IPv4-mapped IPv6 address (``::ffff:127.0.0.1``), else ``address``.

    The kernel connects a mapped address to its IPv4 twin, so it must be judged as that twin;
    otherwise ``::ffff:169.254.169.254`` would pass as an ordinary IPv6 address.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_special(address: IPAddress) -> bool:
    address = canonical(address)
    return any(address.version == b.version and address in b for b in SPECIAL_BLOCKS)
