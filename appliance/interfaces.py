"""The types that cross layers of the job path, so no layer imports the one above it for them.

Config, credentials, probes, the journal and the runner all take these from here: the audit sink
and credential source a probe is handed, and the outcome the dispatcher returns and the journal
keeps (tests/test_layering.py holds the rules this module makes possible).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


class Credential(Protocol):
    """A resolved credential handle. ``secret()`` is called at the moment of use and not kept."""

    @property
    def alias(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def user(self) -> str | None: ...
    @property
    def options(self) -> Mapping[str, str]: ...
    def secret(self, index: int = 0) -> bytes: ...


class CredentialSource(Protocol):
    def lookup(self, alias: str) -> Credential:
        """Return the credential for ``alias``; raise an ApplianceError subclass if it does not exist."""
        ...


class AuditSink(Protocol):
    def record(self, event: str, fields: Mapping[str, object]) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """What goes back to the instance for one output record."""

    payload: str
    error: str | None
    duration_ms: int
    kind: str = "ok"  # ok, error, denied (allowlist), refused (topic or record): for the health counters
    probe: str = ""  # the probe kind that ran, for its latency histogram
