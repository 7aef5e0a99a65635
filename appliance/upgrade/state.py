"""``STATE/upgrade/state.json``: where an upgrade is, written durably before each step it starts.

An upgrader that dies (killed, host rebooted) leaves this file behind; the next ``midbox upgrade``
reads it and finishes the upgrade or rolls it back (appliance.upgrade.flow.resume).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from appliance.errors import ApplianceError
from appliance.limits import MAX_UPGRADE_STATE_BYTES
from hardening.atomic import LockTimeout, atomic_write, file_lock
from hardening.runas import acting_as, state_owner

STATE_NAME = "state.json"
# In order; "confirmed", "rolled_back" and "abandoned" end an upgrade, "rollback_failed" needs a person.
PHASES = (
    "staged",
    "swapped",
    "restarting",
    "restarted",
    "rolling_back",
    "confirmed",
    "rolled_back",
    "abandoned",
    "rollback_failed",
)
FINISHED = frozenset({"confirmed", "rolled_back", "abandoned"})


class UpgradeError(ApplianceError):
    """An upgrade was refused or could not finish; the message says what was done and what to do."""


@dataclass(frozen=True)
class UpgradeState:
    phase: str
    target: str  # the installed binary the service manager runs
    previous: str  # where the binary it replaces is kept
    staged: str  # the new binary, extracted beside the target
    from_version: str
    to_version: str
    new_sha256: str
    previous_sha256: str
    bundle_sha256: str
    key_id: str
    manager: str  # systemd, scm or command
    service: str
    restart_command: tuple[str, ...]
    deadline_s: float
    begun_at: float
    restarted_at: float | None = None  # wall clock, as status.json's times
    reason: str = ""

    def at(self, phase: str, **changes: object) -> UpgradeState:
        if phase not in PHASES:
            raise ValueError(f"unknown upgrade phase {phase}")
        return replace(self, phase=phase, **changes)  # type: ignore[arg-type]


def upgrade_dir(state_dir: Path) -> Path:
    return state_dir / "upgrade"


@contextlib.contextmanager
def upgrade_lock(state_dir: Path) -> Iterator[None]:
    """One upgrader at a time; the lock dies with its holder, so a killed upgrader never wedges the next."""
    directory = upgrade_dir(state_dir)
    lock = directory / ".lock"
    with acting_as(state_owner(state_dir)):
        directory.mkdir(mode=0o700, exist_ok=True)
        # Made as the state dir's owner, so the service user may upgrade too; root opens it either way.
        os.close(os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600))
    held = contextlib.ExitStack()
    try:
        held.enter_context(file_lock(lock, timeout_s=0.5))
    except LockTimeout as e:
        raise UpgradeError(
            "another midbox upgrade is running on this state dir: wait for it to finish"
        ) from e
    with held:
        yield


def summary(state_dir: Path) -> UpgradeState | None:
    """The last upgrade for ``midbox status``, or None when there is none or it cannot be read here."""
    try:
        return load(state_dir)
    except UpgradeError:
        return None


def save(state_dir: Path, state: UpgradeState) -> None:
    """Durable (fsync'd): the state must outlive a power cut between two steps. Written as the state
    dir's owner, so the appliance (as the service user) can read it and finish an upgrade."""
    directory = upgrade_dir(state_dir)
    with acting_as(state_owner(state_dir)):
        directory.mkdir(mode=0o700, exist_ok=True)
        doc = asdict(state)
        doc["restart_command"] = list(state.restart_command)
        atomic_write(directory / STATE_NAME, json.dumps(doc, indent=1, sort_keys=True).encode(), 0o600)


def load(state_dir: Path) -> UpgradeState | None:
    """The last upgrade's state, or None when there never was one. A damaged file is an error: guessing
    which binary is installed could leave the host without a working one."""
    path = upgrade_dir(state_dir) / STATE_NAME
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_UPGRADE_STATE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UpgradeError(f"cannot read {path}: {e.strerror}; run midbox upgrade as root") from e
    try:
        return _parse(data)
    except (ValueError, TypeError, KeyError) as e:
        raise UpgradeError(
            f"{path} is damaged ({e}); check which binary is installed, then remove the file"
        ) from e


def _parse(data: bytes) -> UpgradeState:
    # 1. size first
    if len(data) > MAX_UPGRADE_STATE_BYTES:
        raise ValueError("larger than any state midbox writes")
    doc = json.loads(data)
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    # 2. every known key with its type, then nothing left over
    text = {k: _text(doc, k) for k in _TEXT_KEYS}
    command = doc.pop("restart_command")
    if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
        raise ValueError("restart_command is not a list of strings")
    deadline = _number(doc, "deadline_s")
    begun = _number(doc, "begun_at")
    restarted = doc.pop("restarted_at", None)
    if restarted is not None and not isinstance(restarted, (int, float)):
        raise ValueError("restarted_at is not a number")
    if doc:
        raise ValueError(f"unknown key {sorted(doc)[0]!r}")
    if text["phase"] not in PHASES:
        raise ValueError(f"unknown phase {text['phase']!r}")
    return UpgradeState(
        phase=text["phase"],
        target=text["target"],
        previous=text["previous"],
        staged=text["staged"],
        from_version=text["from_version"],
        to_version=text["to_version"],
        new_sha256=text["new_sha256"],
        previous_sha256=text["previous_sha256"],
        bundle_sha256=text["bundle_sha256"],
        key_id=text["key_id"],
        manager=text["manager"],
        service=text["service"],
        reason=text["reason"],
        restart_command=tuple(command),
        deadline_s=deadline,
        begun_at=begun,
        restarted_at=None if restarted is None else float(restarted),
    )


_TEXT_KEYS = (
    "phase",
    "target",
    "previous",
    "staged",
    "from_version",
    "to_version",
    "new_sha256",
    "previous_sha256",
    "bundle_sha256",
    "key_id",
    "manager",
    "service",
    "reason",
)


def _text(doc: dict[str, object], key: str) -> str:
    value = doc.pop(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} is not text")
    return value


def _number(doc: dict[str, object], key: str) -> float:
    value = doc.pop(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"{key} is not a number")
    return float(value)


def clear_staged(state: UpgradeState) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state.staged)
