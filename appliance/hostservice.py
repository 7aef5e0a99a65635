"""One interface to the host's service manager: systemd on Linux, the Service Control Manager on
Windows. ``midbox service`` talks to this; the platform is chosen once, in ``appliance.servicemanager``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class InstallRequest:
    name: str
    config_path: Path  # resolved, and verified by the caller
    state_dir: Path
    binary: Path | None  # None: this binary (or, from source, the interpreter and the package)
    start: bool = True
    force: bool = False  # Linux: replace a different unit file
    virtual_account: bool = False  # Windows: NT SERVICE\NAME instead of LocalSystem
    unsafe_binary_location: bool = False  # Windows: a binary outside Program Files
    passphrase_file: Path | None = None  # Windows: passed to the service as a path
    environ: dict[str, str] = field(default_factory=dict)  # Windows: where Program Files and friends are


@dataclass(frozen=True)
class Report:
    """What was done (stdout), warnings (stderr), and commands the operator still has to run."""

    done: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    todo: list[list[str]] = field(default_factory=list)


class ServiceManager(Protocol):
    def install(
        self, request: InstallRequest, verify: Callable[[], object], unit_text: Callable[[], str]
    ) -> Report:
        """Install (and start unless ``request.start`` is false). ``verify`` refuses a config the
        appliance would refuse (called after the manager's own checks of the request); ``unit_text``
        verifies and renders the systemd unit, for managers that need one."""
        ...

    def uninstall(self, name: str, *, force: bool) -> Report: ...

    def status(self, name: str) -> dict[str, object]:
        """At least ``installed``, ``running`` and ``state``."""
        ...

    def run(self, name: str, config_path: Path, state_dir: Path, passphrase_file: Path | None) -> int:
        """Be the service body the manager starts (only the SCM starts midbox this way)."""
        ...
