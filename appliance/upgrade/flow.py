"""The upgrade, step by step (see appliance.upgrade), and the resumption of one whose upgrader died."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from appliance.health import parse_iso
from appliance.status_file import read_status
from appliance.upgrade import auditq
from appliance.upgrade.files import extract_binary, keep_and_swap, restore, sha256_file
from appliance.upgrade.manager import Restarter
from appliance.upgrade.state import (
    FINISHED,
    STATE_FILE,
    UpgradeError,
    UpgradeState,
    clear_staged,
    installed_after,
    load,
    save,
)
from appliance.upgrade.version import is_downgrade, parse_version
from hardening.release import MinisignPublicKey, ReleaseLimits, VerifiedRelease, verify_bundle

# build/bundle signs "timestamp:N<TAB>file:SHA256SUMS<TAB>midbox VERSION PLATFORM commit C" (trusted).
_RELEASE = re.compile(r"(?:^|\t)midbox (\S{1,40}) (linux-x86_64|windows-x86_64) commit (\S{1,64})$")


@dataclass(frozen=True)
class Request:
    bundle: Path
    key: MinisignPublicKey
    caps: ReleaseLimits
    target: Path
    restarter: Restarter
    deadline_s: float
    allow_downgrade: bool
    current_version: str  # what runs now (status.json), or this binary's version


@dataclass(frozen=True)
class Env:
    """The upgrader's outside world; tests give a fast clock."""

    state_dir: Path
    say: Callable[[str], None]
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    interval_s: float = 0.25
    audit_notes: list[str] = field(default_factory=list)

    def audit(self, event: str, fields: dict[str, object]) -> None:
        outcome = auditq.record(self.state_dir, event, fields)
        if outcome.startswith("not audited"):
            self.say(f"warning: {outcome}")
        self.audit_notes.append(outcome)


def host_platform() -> str:
    if os.name == "nt":
        # The Linux binary leaves the platform module out (issue 19): on Linux platform.machine() is
        # os.uname().machine; Windows has no uname and keeps the module (paramiko's Pageant client needs it).
        import platform

        machine = platform.machine().lower()
    else:
        machine = os.uname().machine.lower()
    arch = "x86_64" if machine in ("x86_64", "amd64") else machine
    return f"{'windows' if os.name == 'nt' else 'linux'}-{arch}"


def release_version(release: VerifiedRelease) -> tuple[str, str]:
    """The signed (version, platform) of a verified release; the folder name is not signed."""
    m = _RELEASE.search(release.trusted_comment)
    if m is None:
        raise UpgradeError("the bundle's signed comment names no midbox version: it is not a midbox release")
    return m.group(1), m.group(2)


def upgrade(req: Request, env: Env) -> UpgradeState:
    # 0. an upgrade whose upgrader died is finished (or rolled back) before another begins
    unfinished = load(req.target)
    if unfinished is not None and unfinished.phase not in FINISHED:
        env.say(f"finishing the interrupted upgrade to {unfinished.to_version} first")
        done = resume(unfinished, env)
        installed = installed_after(done)
        if installed is not None:
            req = dataclasses.replace(req, current_version=installed)
        if done.phase not in FINISHED:
            raise UpgradeError(
                f"the interrupted upgrade ended {done.phase} ({done.reason}): put a working binary at "
                f"{done.target}, check it with midbox status, then remove {STATE_FILE} beside it"
            )
    bundle_sha = _bundle_sha256(req.bundle, req.caps.bundle_bytes)
    # 1. verify the bundle exactly as 'midbox bundle verify' does
    try:
        release = verify_bundle(req.bundle, req.key, req.caps)
        version, plat = release_version(release)
        parse_version(version)
        if plat != host_platform():
            raise UpgradeError(
                f"the bundle is for {plat}, this host is {host_platform()}: use the {host_platform()} bundle"
            )
        # 2. no downgrade (nor a reinstall) unless asked for
        if not req.allow_downgrade and is_downgrade(req.current_version, version):
            raise UpgradeError(
                f"{version} is not newer than the running {req.current_version}: "
                "pass --allow-downgrade if you mean it"
            )
    except Exception as e:
        env.audit("upgrade.refused", {"bundle_sha256": bundle_sha, "reason": str(e)[:300]})
        raise
    target = req.target
    name = "midbox.exe" if plat.startswith("windows") else "midbox"
    state = UpgradeState(
        phase="staged",
        target=str(target),
        previous=str(target.with_name("midbox.previous" + (".exe" if name.endswith(".exe") else ""))),
        staged=str(target.with_name(f".{target.name}.upgrade-new")),
        from_version=req.current_version,
        to_version=version,
        new_sha256=dict(release.files).get(name, ""),
        previous_sha256=sha256_file(target),
        bundle_sha256=bundle_sha,
        key_id=release.key_id_hex,
        manager=req.restarter.manager,
        service=req.restarter.service,
        restart_command=req.restarter.command,
        deadline_s=req.deadline_s,
        begun_at=env.clock(),
    )
    env.audit(
        "upgrade.started",
        {
            "bundle_sha256": bundle_sha,
            "key_id": release.key_id_hex,
            "from_version": state.from_version,
            "to_version": version,
            "target": str(target),
        },
    )
    # 3. the new binary beside the installed one, checked against the verified hash once more
    save(state)
    clear_staged(state)
    try:
        extract_binary(req.bundle, release, name, Path(state.staged), req.caps.member_bytes)
    except UpgradeError as e:
        return _end(env, state.at("abandoned", reason=str(e)), "upgrade.abandoned")
    return _swap_and_restart(state, env)


def _swap_and_restart(state: UpgradeState, env: Env) -> UpgradeState:
    # 4. keep the previous binary and swap by rename
    try:
        keep_and_swap(Path(state.target), Path(state.previous), Path(state.staged))
    except OSError as e:
        clear_staged(state)
        reason = f"cannot replace {state.target} ({e.strerror}): run midbox upgrade as the binary's owner"
        return _end(env, state.at("abandoned", reason=reason), "upgrade.abandoned")
    state = state.at("swapped")
    save(state)
    env.audit(
        "upgrade.swapped",
        {"target": state.target, "previous_sha256": state.previous_sha256, "new_sha256": state.new_sha256},
    )
    env.say(f"installed {state.to_version}; the previous binary is kept as {Path(state.previous).name}")
    return _restart_and_watch(state, env)


def _restart_and_watch(state: UpgradeState, env: Env) -> UpgradeState:
    # 5. restart; the time goes to disk first, so a resumed watch waits for a poll newer than it
    state = state.at("restarting", restarted_at=env.clock())
    save(state)
    try:
        _restarter(state).restart()
    except UpgradeError as e:
        return _rollback(state, env, f"restart failed: {e}")
    state = state.at("restarted")
    save(state)
    env.audit(
        "upgrade.restarted", {"manager": state.manager, "service": state.service, "version": state.to_version}
    )
    return _watch(state, env)


def _watch(state: UpgradeState, env: Env) -> UpgradeState:
    # 6. a successful poll by the new version, newer than the restart, within the deadline
    assert state.restarted_at is not None
    seen = _wait_healthy(env, state.restarted_at, state.deadline_s, state.to_version, state.new_sha256)
    if seen is not None:
        took = round(seen - state.restarted_at, 3)
        env.say(f"{state.to_version} polled successfully {took} s after the restart")
        return _end(
            env, state.at("confirmed", reason=f"first successful poll after {took} s"), "upgrade.confirmed"
        )
    # 7. else roll back
    return _rollback(state, env, f"no successful poll by {state.to_version} within {state.deadline_s:g} s")


def _rollback(state: UpgradeState, env: Env, reason: str) -> UpgradeState:
    state = state.at("rolling_back", reason=reason)
    save(state)
    env.say(f"rolling back to {state.from_version}: {reason}")
    try:
        restore(Path(state.target), Path(state.previous), state.previous_sha256)
    except (UpgradeError, OSError) as e:
        return _end(
            env,
            state.at("rollback_failed", reason=f"{reason}; restore failed: {e}"),
            "upgrade.rollback_failed",
        )
    since = env.clock()
    try:
        _restarter(state).restart()
    except UpgradeError as e:
        return _end(env, state.at("rollback_failed", reason=f"{reason}; {e}"), "upgrade.rollback_failed")
    back = _wait_healthy(env, since, state.deadline_s, state.from_version, state.previous_sha256)
    healthy = back is not None
    note = (
        ""
        if healthy
        else f"; {state.from_version} did not poll within {state.deadline_s:g} s either, see midbox status"
    )
    return _end(env, state.at("rolled_back", reason=reason + note), "upgrade.rolled_back", healthy=healthy)


def _end(env: Env, state: UpgradeState, event: str, **extra: object) -> UpgradeState:
    save(state)
    fields: dict[str, object] = {
        "from_version": state.from_version,
        "to_version": state.to_version,
        "new_sha256": state.new_sha256,
        "reason": state.reason,
        **extra,
    }
    env.audit(event, fields)
    return state


def resume(state: UpgradeState, env: Env) -> UpgradeState:
    """Finish an upgrade at the step its upgrader died in; every step is safe to repeat."""
    env.audit("upgrade.resumed", {"phase": state.phase, "to_version": state.to_version})
    target = Path(state.target)
    if state.phase == "staged":
        if target.exists() and sha256_file(target) == state.new_sha256:
            return _restart_and_watch(state.at("swapped"), env)  # died between the rename and the save
        clear_staged(state)
        return _end(
            env, state.at("abandoned", reason="the upgrader stopped before the swap"), "upgrade.abandoned"
        )
    if state.phase == "swapped":
        return _restart_and_watch(state, env)
    if state.phase in ("restarting", "restarted") and state.restarted_at is not None:
        if state.phase == "restarting":
            # The restart may or may not have been issued: issue it (again) and wait from now.
            return _restart_and_watch(state, env)
        return _watch(state, env)
    if state.phase == "rolling_back":
        return _rollback(state, env, state.reason or "resumed rollback")
    return state  # finished, or rollback_failed (a person decides)


def _restarter(state: UpgradeState) -> Restarter:
    return Restarter(state.manager, state.service, state.restart_command)


def _wait_healthy(env: Env, since: float, deadline_s: float, version: str, sha256: str) -> float | None:
    """When status.json first showed ``version`` polling after ``since``; None at the deadline."""
    end = since + deadline_s
    while True:
        status = read_status(env.state_dir)
        if status is not None and _polled_since(status, since, version, sha256):
            return env.clock()
        if env.clock() >= end:
            return None
        env.sleep(env.interval_s)


def _polled_since(status: dict[str, object], since: float, version: str, sha256: str) -> bool:
    last_ok, started = parse_iso(status.get("last_poll_ok")), parse_iso(status.get("started"))
    if last_ok is None or started is None or last_ok <= since or started < since:
        return False
    if status.get("version") != version:
        return False
    running = status.get("binary_sha256")
    # A frozen binary reports its own SHA-256; a source run says "source" and is judged by version.
    return not (isinstance(running, str) and len(running) == 64 and running != sha256)


def _bundle_sha256(bundle: Path, cap: int) -> str:
    """The digest the audit entries name; an oversize file is refused unread, so it gets none."""
    if bundle.is_file():
        return sha256_file(bundle) if bundle.stat().st_size <= cap else ""
    try:
        return hashlib.sha256((bundle / "SHA256SUMS").read_bytes()[: 1 << 16]).hexdigest()
    except OSError:
        return ""
