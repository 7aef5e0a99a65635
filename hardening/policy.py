"""Allowlist policy: deny by default; a probe runs only where a signed rule allows it.

The check is made on the address actually connected to (the caller resolves once and connects to
the checked address), so DNS answers and redirects cannot steer a probe outside the rules.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardening.scopes import Ask, Scopes

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


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    rule: int | None = None  # 1-based index of the deciding [[allow]] rule (a refusing one for scope)
    # Set when the only thing keeping the job out is a rule's scope (what it may do, not where).
    scope: str | None = None


@dataclass(frozen=True)
class Verdict:
    """What one rule says about a job whose target it matches (``policy explain`` shows each)."""

    rule: int
    allowed: bool
    reason: str
    scope: bool = False  # the refusal is the rule's scope


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


# Cached per policy (one config): the rules a (probe, address, port, credential, hostname) meets, and
# each rule's scope verdict on one ask. Discovery asks the same few things of many targets, so both stay
# small; past the bound a cache starts over (the answers are the same, only recomputed).
DECISION_CACHE_ENTRIES = 4096
SCOPE_CACHE_ENTRIES = 4096
CACHED_ASK_CHARS = 1024
CACHED_ASK_OIDS = 64

# One rule's answer before its scope: (1-based index, rule, why not allowed or None). A rule listed
# here matched the target (or names the host); None means only the scope is left to judge.
_Step = tuple[int, AllowRule, str | None]


class _Compiled:
    """The per-config form of the rules: networks as integers, and the bounded caches."""

    def __init__(self, rules: tuple[AllowRule, ...]) -> None:
        # Per rule: (version, network address, netmask) as integers, so a membership test is two
        # integer operations instead of ipaddress's per-call type checks.
        self.nets: tuple[tuple[tuple[int, int, int], ...], ...] = tuple(
            tuple((n.version, int(n.network_address), int(n.netmask)) for n in rule.networks)
            for rule in rules
        )
        self.named = tuple(bool(rule.hosts) for rule in rules)
        self.steps: dict[tuple[object, ...], tuple[_Step, ...]] = {}
        self.decisions: dict[tuple[object, ...], Decision] = {}
        self.scopes: dict[tuple[int, str, Ask | None], str | None] = {}


def _remember(cache: dict[Any, Any], key: object, value: object, bound: int) -> None:
    if len(cache) >= bound:
        cache.clear()
    cache[key] = value


def _cacheable(ask: Ask | None) -> bool:
    """Small asks only: a cache of hostile megabyte commands would hold megabytes per entry."""
    if ask is None:
        return True
    return (
        len(ask.command or "") <= CACHED_ASK_CHARS
        and len(ask.path or "") <= CACHED_ASK_CHARS
        and len(ask.oids or ()) <= CACHED_ASK_OIDS
    )


class Policy:
    """The allowlist of one verified config. Immutable; a new config makes a new Policy.

    ``scoped(ask)`` gives the same rules bound to one job's ask: every check made through it also
    holds the job to each rule's scopes, so no probe can reach a target without them.
    """

    def __init__(
        self, rules: Sequence[AllowRule], ask: Ask | None = None, *, _compiled: _Compiled | None = None
    ) -> None:
        self._rules = tuple(rules)
        self._ask = ask
        self._compiled = _compiled if _compiled is not None else _Compiled(self._rules)

    @property
    def rules(self) -> tuple[AllowRule, ...]:
        return self._rules

    @property
    def ask(self) -> Ask | None:
        return self._ask

    def scoped(self, ask: Ask) -> Policy:
        return Policy(self._rules, ask, _compiled=self._compiled)

    def rule(self, number: int | None) -> AllowRule | None:
        """The rule a Decision names (1-based), or None."""
        return self._rules[number - 1] if number is not None and 1 <= number <= len(self._rules) else None

    def _judge_target(
        self,
        index: int,
        rule: AllowRule,
        *,
        probe: str,
        address: IPAddress,
        port: int,
        credential: str | None,
        hostname: str | None,
    ) -> tuple[bool, str | None]:
        """One rule's decision up to its scope: (target matches, why not allowed or None)."""
        if not rule.matches_target(address, hostname):
            if rule.names_host(hostname):
                within = ", ".join(str(n) for n in rule.resolves_within)
                return (
                    False,
                    (
                        f"rule {index} names {hostname} but allows it only where it resolves within "
                        f"{within}; it resolved to {address}"
                    ),
                )
            return False, ""  # not this rule's target: nobody shows a reason for it
        if probe not in rule.probes:
            return True, f"rule {index} matches {address} but not probe {probe!r}"
        if not any(port in r for r in rule.ports):
            return True, f"rule {index} matches {address} but not port {port}"
        if credential is not None and credential not in rule.credentials:
            return True, f"rule {index} does not allow credential {credential!r} there"
        if is_special(address) and not rule.names_explicitly(address):
            return (
                True,
                (
                    f"{address} is a loopback, link-local or metadata address; rule {index} "
                    "must name it with a CIDR inside that block"
                ),
            )
        return True, None

    def _steps(
        self, *, probe: str, address: IPAddress, port: int, credential: str | None, hostname: str | None
    ) -> tuple[_Step, ...]:
        """Every rule that matches the target or names the host, in order, with its answer before scope."""
        compiled = self._compiled
        key = (probe, address, port, credential, hostname)
        steps = compiled.steps.get(key)
        if steps is not None:
            return steps
        value, version = int(address), address.version
        out: list[_Step] = []
        for index, rule in enumerate(self._rules, start=1):
            # The first step of the judgement, on integers (a literal address outside the rule): a config
            # of many rules is scanned in microseconds, and only once per target.
            if not compiled.named[index - 1] and not any(
                v == version and value & mask == net for v, net, mask in compiled.nets[index - 1]
            ):
                continue
            matched, why = self._judge_target(
                index, rule, probe=probe, address=address, port=port, credential=credential, hostname=hostname
            )
            if matched or rule.names_host(hostname):
                out.append((index, rule, why))
        steps = tuple(out)
        _remember(compiled.steps, key, steps, DECISION_CACHE_ENTRIES)
        return steps

    def _scope_refusal(self, index: int, rule: AllowRule, probe: str) -> str | None:
        """The rule's scope on this policy's ask. Unbound (no job): a scoped rule refuses."""
        ask = self._ask
        if not _cacheable(ask):
            return rule.scopes.refusal(probe, ask or _NO_ASK)
        cache = self._compiled.scopes
        key = (index, probe, ask)
        try:
            return cache[key]
        except KeyError:
            refusal = rule.scopes.refusal(probe, ask or _NO_ASK)
            _remember(cache, key, refusal, SCOPE_CACHE_ENTRIES)
            return refusal

    def _judge(self, step: _Step, *, probe: str, address: IPAddress, port: int) -> tuple[str | None, bool]:
        """The one decision of one matching rule: (why not allowed or None, refused by its scope)."""
        index, rule, why = step
        if why is not None:
            return why, False
        refusal = self._scope_refusal(index, rule, probe)
        if refusal is not None:
            return f"{rule.label(index)} allows {address} port {port} but {refusal}", True
        return None, False

    def verdicts(
        self,
        *,
        probe: str,
        address: IPAddress,
        port: int,
        credential: str | None = None,
        hostname: str | None = None,
    ) -> tuple[Verdict, ...]:
        """One verdict per rule whose target matches (or that names the host), in rule order."""
        address = canonical(address)
        out = []
        for step in self._steps(
            probe=probe, address=address, port=port, credential=credential, hostname=hostname
        ):
            why, scope = self._judge(step, probe=probe, address=address, port=port)
            index, rule, _ = step
            out.append(Verdict(index, why is None, why or f"allowed by {rule.label(index)}", scope))
        return tuple(out)

    def check(
        self,
        *,
        probe: str,
        address: IPAddress,
        port: int,
        credential: str | None = None,
        hostname: str | None = None,
    ) -> Decision:
        """Decide one (probe, address, port, credential[, ask]); the first rule that allows it wins."""
        address = canonical(address)
        key = (probe, address, port, credential, hostname, self._ask)
        decided = self._compiled.decisions.get(key)
        if decided is not None:
            return decided
        decided = self._decide(
            probe=probe, address=address, port=port, credential=credential, hostname=hostname
        )
        if _cacheable(self._ask):
            _remember(self._compiled.decisions, key, decided, DECISION_CACHE_ENTRIES)
        return decided

    def _decide(
        self, *, probe: str, address: IPAddress, port: int, credential: str | None, hostname: str | None
    ) -> Decision:
        if not self._rules:
            return Decision(False, "the signed config has no [[allow]] rules (deny by default)")
        near_miss = ""
        scope: str | None = None
        scope_rule: int | None = None
        for step in self._steps(
            probe=probe, address=address, port=port, credential=credential, hostname=hostname
        ):
            why, by_scope = self._judge(step, probe=probe, address=address, port=port)
            if why is None:
                return Decision(True, f"allowed by rule {step[0]}", step[0])
            if not near_miss:
                near_miss = why
                scope, scope_rule = (why, step[0]) if by_scope else (None, None)
        return Decision(
            False,
            near_miss or f"no [[allow]] rule covers {address}; add one to the signed config if it should",
            rule=scope_rule,
            scope=scope,
        )

    def credentials_for(
        self, *, probe: str, address: IPAddress, port: int, hostname: str | None = None
    ) -> tuple[str, ...]:
        """The aliases of every rule that allows (probe, address, port), in rule order, each once.

        These are the candidates when a job names no credential; each is still checked with ``check``.
        """
        address = canonical(address)
        found: dict[str, None] = {}
        for rule in self._rules:
            if (
                rule.matches_target(address, hostname)
                and probe in rule.probes
                and any(port in r for r in rule.ports)
            ):
                found.update(dict.fromkeys(rule.credentials))
        return tuple(found)


_NO_ASK = Ask()
