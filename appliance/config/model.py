"""Frozen dataclasses for the config file of contract.md."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from pathlib import Path

from appliance.limits import Limits
from appliance.ratelimit import RateSettings, RuleLimits
from hardening.filepins import NamedFile
from hardening.policy import AllowRule, CredentialMap, Policy


@dataclass(frozen=True)
class ApplianceSection:
    # The name this appliance runs as. A fleet config (``names = [...]``) parses with "" here; the
    # verifier fills in the local name (the one pinned in the state dir) once it checked it is listed.
    name: str
    max_concurrent_probes: int = 64
    rates: RateSettings = field(default_factory=RateSettings)  # per target; the rules' own are added
    max_job_age_s: float = 86_400.0  # replay protection: older output records are refused
    fleet: tuple[str, ...] = ()  # ``names = [...]`` with two or more names, as written

    @property
    def names(self) -> tuple[str, ...]:
        """Every appliance the config is for (what its signature must bind to)."""
        return self.fleet or (self.name,)

    @property
    def agent(self) -> str:
        """The ECC agent name the instance knows this appliance by."""
        return f"mid.server.{self.name}"


@dataclass(frozen=True)
class InstanceSection:
    url: str
    ca_file: Path
    client_cert: Path | None
    client_key: Path | None
    poll_interval_s: float = 5.0
    use_system_trust: bool = False
    proxy: str | None = None
    basic_auth_credential: str | None = None  # alias in the credential store, for instances without mTLS
    # SHA-256 pins from the signed config's [files] table (None: not pinned).
    ca_file_sha256: str | None = None


@dataclass(frozen=True)
class AllowSection:
    """One [[allow]] rule as written, kept for display (``config verify``, ``policy explain``)."""

    cidrs: tuple[str, ...]
    hosts: tuple[str, ...]
    probes: tuple[str, ...]
    ports: tuple[str, ...]
    credentials: tuple[str, ...]
    rule: AllowRule
    limits: RuleLimits = field(default_factory=RuleLimits)


@dataclass(frozen=True)
class ParsedConfig:
    """What the TOML file says. Not yet trusted: nothing may run on a ParsedConfig."""

    version: int
    expires: dt.datetime
    appliance: ApplianceSection
    instance: InstanceSection
    allow: tuple[AllowSection, ...]
    source: Path
    # Real probes name a discovery_credentials sys_id or a tag, never a local alias.
    credential_map: CredentialMap = field(default_factory=CredentialMap)
    # Every file the config names (CA files, the client certificate), with its pin if [files] has one.
    files: tuple[NamedFile, ...] = ()

    def policy(self) -> Policy:
        return Policy([a.rule for a in self.allow])

    def limits(self) -> Limits:
        return Limits(concurrent_probes=self.appliance.max_concurrent_probes)

    def rate_settings(self) -> RateSettings:
        rules = {number: a.limits for number, a in enumerate(self.allow, start=1)}
        return replace(self.appliance.rates, rules=rules)


@dataclass(frozen=True)
class _Receipt:
    """What ``appliance.config.verify`` hands ``Config``: proof that these very settings passed.

    Private to the config package: only the verifier makes one (as sigstore's ``Bundle`` runs its own
    check in ``__init__``), so a ``Config`` cannot be written by hand or derived from a verified one
    with ``dataclasses.replace`` and other settings.
    """

    settings: ParsedConfig
    sha256: str
    signers: tuple[str, ...]


@dataclass(frozen=True)
class Config:
    """A config whose signature, trust, expiry, binding and version were verified, in that order.

    Only ``appliance.config.verify`` can make one; tests sign a config for real (tests/support/signed.py).
    """

    settings: ParsedConfig
    sha256: str
    signers: tuple[str, ...]
    # Optional only so that leaving it out gets the message below rather than a bare signature error.
    receipt: _Receipt | None = field(default=None, repr=False, compare=False, kw_only=True)

    def __post_init__(self) -> None:
        r = self.receipt
        vouched = (
            type(r) is _Receipt
            and r.settings is self.settings
            and r.sha256 == self.sha256
            and r.signers == self.signers
        )
        if not vouched:
            raise TypeError(
                "a Config is made only by verifying a signed config: call "
                "appliance.config.verify.load_verified_config (tests: tests/support/signed.py)"
            )

    @property
    def version(self) -> int:
        return self.settings.version

    @property
    def appliance(self) -> ApplianceSection:
        return self.settings.appliance

    @property
    def instance(self) -> InstanceSection:
        return self.settings.instance

    def policy(self) -> Policy:
        return self.settings.policy()

    def limits(self) -> Limits:
        return self.settings.limits()

    def rate_settings(self) -> RateSettings:
        return self.settings.rate_settings()

    @property
    def credential_map(self) -> CredentialMap:
        return self.settings.credential_map
