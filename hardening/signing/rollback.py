"""Pinned state beside the trust root: highest accepted config version and hash, trust root version and hash.

``STATE_DIR/config-state.json`` is the anchor. The initial trust root is pinned when it is installed
(``trust init``); from then on a ``trust.json`` whose hash differs from the pin is refused unless it
arrived through a rotation signed by the old keys, which moves the pin in the same step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from hardening._strictjson import Fields, canonical, loads_strict
from hardening.atomic import atomic_write, fsync_dir
from hardening.perms import PermissionsError, read_regular_file
from hardening.signing.errors import RollbackError, TrustRootError
from hardening.signing.trust import MAX_TRUST_BYTES, TrustRoot, parse, serialize, verify_rotation

STATE_FORMAT = "midbox-config-state-v1"
TRUST_FILE = "trust.json"
STATE_FILE = "config-state.json"
NEXT_TRUST_FILE = "trust.next.json"  # a rotation in progress: written before the pin moves
MAX_STATE_BYTES = 4096


@dataclass(frozen=True)
class PinnedState:
    trust_version: int
    trust_sha256: str
    config_version: int = 0
    config_sha256: str | None = None
    appliance_name: str | None = None

    def check_config_version(self, version: int, sha256: str) -> None:
        """Refuse a rollback: older versions always, the same version only with the same bytes."""
        if version < self.config_version:
            raise RollbackError(
                f"config version {version} is older than version {self.config_version} already accepted "
                f"(rollback refused); sign a config with version {self.config_version + 1} or later"
            )
        if version == self.config_version and sha256 != self.config_sha256:
            raise RollbackError(
                f"config version {version} was already accepted with different content; "
                "raise 'version' and sign again"
            )

    def after_accepting(self, version: int, sha256: str, name: str) -> PinnedState:
        return replace(self, config_version=version, config_sha256=sha256, appliance_name=name)


def _serialize_state(s: PinnedState) -> bytes:
    return (
        canonical(
            {
                "format": STATE_FORMAT,
                "trust_version": s.trust_version,
                "trust_sha256": s.trust_sha256,
                "config_version": s.config_version,
                "config_sha256": s.config_sha256,
                "appliance_name": s.appliance_name,
            }
        )
        + b"\n"
    )


def read_state(state_dir: Path) -> PinnedState | None:
    path = state_dir / STATE_FILE
    try:
        # Never through a link: one to a file someone else can write would let them roll the counter back.
        data = read_regular_file(path, MAX_STATE_BYTES)
    except FileNotFoundError:
        return None
    except PermissionsError as e:
        raise TrustRootError(f"{STATE_FILE}: {e}") from e
    except OSError as e:
        raise TrustRootError(f"cannot read {path.name}: {e.strerror}") from e
    what = STATE_FILE
    f = Fields(loads_strict(data, MAX_STATE_BYTES, what, TrustRootError), what, TrustRootError)
    if f.take("format", str) != STATE_FORMAT:
        raise f.fail(f"format must be {STATE_FORMAT!r}")
    trust_version = f.take("trust_version", int)
    trust_sha256 = f.hex("trust_sha256", 64)
    config_version = f.take("config_version", int)
    config_sha256 = f.optional("config_sha256", str)
    if config_sha256 is not None and (len(config_sha256) != 64 or config_sha256.strip("0123456789abcdef")):
        raise f.fail("field 'config_sha256' must be 64 lowercase hex digits")
    state = PinnedState(
        trust_version, trust_sha256, config_version, config_sha256, f.optional("appliance_name", str)
    )
    f.done()
    return state


def write_state(state_dir: Path, state: PinnedState) -> None:
    atomic_write(state_dir / STATE_FILE, _serialize_state(state))


def load_trust_root(state_dir: Path) -> tuple[TrustRoot, PinnedState]:
    """The installed trust root, only if it matches the pin. Fails closed when either file is missing."""
    state = read_state(state_dir)
    path = state_dir / TRUST_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if state is None:
            raise TrustRootError(
                "no trust root installed; run 'midbox trust init --pubkey ADMIN.pub' at enrollment"
            ) from None
        raise TrustRootError(
            f"{TRUST_FILE} is missing but a trust root was pinned (version {state.trust_version}); "
            "restore it from backup - re-enrolling needs the state dir cleared by hand"
        ) from None
    root, _sigs = parse(data, TRUST_FILE)
    if state is not None and root.sha256 != state.trust_sha256:
        root = _finish_rotation(state_dir, state) or root
    if state is None:
        raise TrustRootError(
            f"{STATE_FILE} is missing beside {TRUST_FILE}: the pin and rollback counter were removed; "
            "refusing the unpinned trust root"
        )
    if root.sha256 != state.trust_sha256 or root.version != state.trust_version:
        raise TrustRootError(
            f"{TRUST_FILE} (version {root.version}, sha256 {root.sha256[:16]}...) does not match the pinned "
            f"trust root (version {state.trust_version}, sha256 {state.trust_sha256[:16]}...): it was "
            "replaced without a rotation signed by the old keys"
        )
    return root, state


def _finish_rotation(state_dir: Path, state: PinnedState) -> TrustRoot | None:
    """Complete a rotation interrupted after the pin moved: only a staged file matching the pin counts."""
    try:
        data = (state_dir / NEXT_TRUST_FILE).read_bytes()
    except FileNotFoundError:
        return None
    staged, _sigs = parse(data, NEXT_TRUST_FILE)
    if staged.sha256 != state.trust_sha256 or staged.version != state.trust_version:
        return None
    os.replace(state_dir / NEXT_TRUST_FILE, state_dir / TRUST_FILE)
    fsync_dir(state_dir)
    return staged


def install_initial_root(state_dir: Path, root: TrustRoot, appliance_name: str | None = None) -> PinnedState:
    """``trust init``: refuses if a root or a pin exists, so it cannot be used to replace a root."""
    if (state_dir / TRUST_FILE).exists() or (state_dir / STATE_FILE).exists():
        raise TrustRootError(
            "a trust root is already installed (or pinned); change it with 'midbox trust rotate NEWROOT'"
        )
    state = PinnedState(root.version, root.sha256, appliance_name=appliance_name)
    # Pin first: a crash after this leaves a pin without a root, which fails closed.
    write_state(state_dir, state)
    atomic_write(state_dir / TRUST_FILE, serialize(root), mode=0o644)
    return state


def rotate_root(state_dir: Path, new_data: bytes) -> tuple[TrustRoot, TrustRoot, set[str]]:
    """``trust rotate``: verify the new root against the current one, then move file and pin."""
    current, state = load_trust_root(state_dir)
    if len(new_data) > MAX_TRUST_BYTES:
        raise TrustRootError(f"new trust root is larger than {MAX_TRUST_BYTES} bytes")
    new, sigs = parse(new_data, "new trust root")
    signers = verify_rotation(current, new, sigs)
    # Stage, move the pin, then swap in: a crash at any point leaves either the old root pinned,
    # or the new root pinned and staged, which load_trust_root completes.
    atomic_write(state_dir / NEXT_TRUST_FILE, serialize(new, sigs), mode=0o644)
    write_state(state_dir, replace(state, trust_version=new.version, trust_sha256=new.sha256))
    os.replace(state_dir / NEXT_TRUST_FILE, state_dir / TRUST_FILE)
    fsync_dir(state_dir)
    return current, new, signers
