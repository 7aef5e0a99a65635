"""``.midbox-upgrade.json`` beside the binary: where an upgrade is, written durably before each step.

An upgrader that dies (killed, host rebooted) leaves this file behind; the next ``midbox upgrade``
reads it and finishes the upgrade or rolls it back (appliance.upgrade.flow.resume).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from appliance.errors import ApplianceError
from appliance.limits import MAX_UPGRADE_STATE_BYTES
from hardening.atomic import LockTimeoutError, atomic_write, file_lock

STATE_FILE = ".midbox-upgrade.json"
LOCK_FILE = ".midbox-upgrade.lock"
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
    """Where the upgrader queues audit entries for the appliance (appliance.upgrade.auditq)."""
    return state_dir / "upgrade"


def state_path(target: Path) -> Path:
    """The upgrade's state lives beside the installed binary, not in the state dir: the service user
    owns the state dir, and a state file it could edit would tell root which files to move and which
    restart command to run. Whoever can write the binary's folder can replace the binary anyway."""
    return target.with_name(STATE_FILE)


@contextlib.contextmanager
def upgrade_lock(target: Path) -> Iterator[None]:
    """One upgrader per binary; the lock dies with its holder, so a killed upgrader never wedges the next."""
    held = contextlib.ExitStack()
    try:
        held.enter_context(file_lock(target.with_name(LOCK_FILE), timeout_s=0.5))
    except LockTimeoutError as e:
        raise UpgradeError(f"another midbox upgrade of {target} is running: wait for it to finish") from e
    with held:
        yield


def save(state: UpgradeState) -> None:
    """Durable (fsync'd): the state must outlive a power cut between two steps."""
    doc = asdict(state)
    doc["restart_command"] = list(state.restart_command)
    data = json.dumps(doc, indent=1, sort_keys=True).encode()
    atomic_write(state_path(Path(state.target)), data, 0o644)  # no secret in it; operators may read it


def load(target: Path) -> UpgradeState | None:
    """The last upgrade of ``target``, or None when there never was one. A damaged or foreign file is an
    error: guessing which binary is installed could leave the host without a working one."""
    path = state_path(target)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UpgradeError(f"cannot read {path}: {e.strerror}; run midbox upgrade as root") from e
    with os.fdopen(fd, "rb") as fh:
        _check_ours(os.fstat(fh.fileno()), path)
        data = fh.read(MAX_UPGRADE_STATE_BYTES + 1)
    try:
        state = _parse(data)
    except (ValueError, TypeError, KeyError) as e:
        raise UpgradeError(
            f"{path} is damaged ({e}); check which binary is installed, then remove the file"
        ) from e
    if Path(state.target) != target:
        raise UpgradeError(f"{path} is about {state.target}, not {target}: remove the file")
    return state


def installed_after(state: UpgradeState) -> str | None:
    """The version a finished upgrade left installed; None while it is not finished."""
    if state.phase == "confirmed":
        return state.to_version
    if state.phase in ("rolled_back", "abandoned"):
        return state.from_version
    return None


def _check_ours(st: os.stat_result, path: Path) -> None:
    """Root acts on this file (moves binaries, runs the restart command): only root or the user running
    the upgrade may have written it."""
    if not stat.S_ISREG(st.st_mode):
        raise UpgradeError(f"{path} is not a regular file: remove it")
    if os.name != "posix":
        return  # the binary's folder (Program Files) is writable by administrators only
    if st.st_uid not in (0, os.geteuid()) or stat.S_IMODE(st.st_mode) & 0o022:
        raise UpgradeError(
            f"{path} was written by uid {st.st_uid} or is writable by others: an upgrader does not act on "
            "it; check which binary is installed, then remove the file"
        )


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
