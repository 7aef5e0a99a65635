"""Allowlist policy: deny by default; a probe runs only where a signed rule allows it.

The rules themselves (what one ``[[allow]]`` says) are ``hardening.allowrule``; this module decides.

The check is made on the address actually connected to (the caller resolves once and connects to
the checked address), so DNS answers and redirects cannot steer a probe outside the rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hardening.allowrule import (
    HOST_KEY_MODES,
    PROBE_KINDS,
    SPECIAL_BLOCKS,
    AllowRule,
    CredentialMap,
    IPAddress,
    IPNetwork,
    PortRange,
    canonical,
    is_special,
)
from hardening.scopes import Ask

# The rule model lives in hardening.allowrule; it is re-exported here because a rule and the policy
# that judges by it are used together (``from hardening.policy import AllowRule, Policy``).
__all__ = [
    "HOST_KEY_MODES",
    "PROBE_KINDS",
    "SPECIAL_BLOCKS",
    "AllowRule",
    "CredentialMap",
    "Decision",
    "IPAddress",
    "IPNetwork",
    "Policy",
    "PortRange",
    "Verdict",
    "canonical",
    "is_special",
]


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
