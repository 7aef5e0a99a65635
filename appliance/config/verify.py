"""The appliance side of config verification: the only place a ``Config`` is constructed.

Steps 1-8 are ``hardening.signing.verify.ConfigSignatureCheck``; step 9 parses the TOML (only now) and
checks that it says what the envelope says; 9b checks the files it pins; step 10 moves the rollback
counter.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from appliance.config.model import Config, ParsedConfig, _Receipt
from appliance.config.parse import parse_config
from appliance.config.warnings import config_warnings
from appliance.errors import ConfigError
from appliance.interfaces import AuditSink
from appliance.limits import MAX_CONFIG_BYTES
from hardening.errors import HardeningError
from hardening.filepins import check_pins
from hardening.signing.envelope import MAX_ENVELOPE_BYTES
from hardening.signing.errors import BindingError
from hardening.signing.rollback import PinnedState, load_trust_root, read_state, write_state
from hardening.signing.trust import MAX_TRUST_BYTES, TrustRoot
from hardening.signing.trust import parse as parse_trust
from hardening.signing.verify import ConfigSignatureCheck, VerifiedStatement
from hardening.smallfile import read_capped
from hardening.utctime import format_time

log = logging.getLogger(__name__)


def signature_path(config_path: Path) -> Path:
    return config_path.with_name(config_path.name + ".sig")


def _read_capped(path: Path, cap: int, what: str, missing_ok: bool = False) -> bytes | None:
    try:
        return read_capped(path, cap)  # one byte over the cap, so step 1 sees an oversized file
    except FileNotFoundError:
        if missing_ok:
            return None
        fix = "; pass --config with the signed config's path" if what == "config" else ""
        raise ConfigError(f"{what} {path} not found{fix}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}") from e


def _trust(state_dir: Path, trust_file: Path | None) -> tuple[TrustRoot, PinnedState | None]:
    if trust_file is None:
        return load_trust_root(state_dir)
    # An explicit root (an admin checking a config before deployment) is taken as given; the
    # appliance's own rollback state, if any, still applies.
    data = _read_capped(trust_file, MAX_TRUST_BYTES, "trust root")
    assert data is not None
    root, _sigs = parse_trust(data, str(trust_file.name))
    return root, read_state(state_dir) if state_dir.is_dir() else None


def step9_parse_and_match(data: bytes, path: Path, verified: VerifiedStatement) -> ParsedConfig:
    """9. Only now parse the TOML; what it says must equal what was signed."""
    parsed = parse_config(data, path)
    st = verified.statement
    if parsed.appliance.names != st.names:
        raise BindingError(
            f"config names appliance(s) {', '.join(parsed.appliance.names)[:200]}, its signature "
            f"{', '.join(st.names)[:200]}"
        )
    if parsed.version != st.version:
        raise BindingError(f"config says version {parsed.version}, its signature {st.version}")
    if parsed.expires != st.expires:
        raise BindingError(
            f"config expires {format_time(parsed.expires)}, its signature {format_time(st.expires)}"
        )
    return parsed


def load_verified_config(
    path: Path,
    state_dir: Path,
    now: dt.datetime,
    expected_name: str | None = None,
    commit: bool = True,
    *,
    trust_file: Path | None = None,
) -> Config:
    """Verify ``path`` and ``path.sig`` against the pinned trust root; raise on the first failure.

    ``commit=False`` (``config verify``) leaves the rollback counter where it is. With ``trust_file``
    nothing is committed either: that root is not the appliance's own.
    """
    data = _read_capped(path, MAX_CONFIG_BYTES, "config")
    assert data is not None
    envelope = _read_capped(signature_path(path), MAX_ENVELOPE_BYTES, "signature", missing_ok=True)
    return verify_config_bytes(
        data, envelope, path, state_dir, now, expected_name, commit, trust_file=trust_file
    )


def verify_config_bytes(
    data: bytes,
    envelope: bytes | None,
    path: Path,
    state_dir: Path,
    now: dt.datetime,
    expected_name: str | None = None,
    commit: bool = True,
    *,
    trust_file: Path | None = None,
) -> Config:
    """``load_verified_config`` for bytes already read (a config delivered through the instance).

    ``path`` is where the config lives or will live: relative file names in it resolve from there.
    """
    root, state = _trust(state_dir, trust_file)
    check = ConfigSignatureCheck(
        trust=root, state=state, now=now, expected_name=expected_name, max_config_bytes=MAX_CONFIG_BYTES
    )
    verified = check.run_all(data, envelope)  # steps 1-8
    parsed = step9_parse_and_match(data, path, verified)
    st = verified.statement
    # 9a. The name this appliance runs as: a fleet config names several, so it comes from here.
    local = expected_name or (state.appliance_name if state is not None else None)
    local = local or (st.appliance if not st.fleet else None)
    if local is None:
        raise BindingError(
            f"config is for a fleet of {len(st.fleet)} appliances and this appliance's name is not "
            "pinned; pin it with 'midbox trust init --name NAME' (or pass --name to 'config verify')"
        )
    parsed = replace(parsed, appliance=replace(parsed.appliance, name=local))
    # 9b. The files it names and pins (CA files, client certificate) are the files that were signed.
    check_pins(parsed.files)
    # 10. Persist the highest accepted version (atomic) before the config is used.
    if commit and trust_file is None and state is not None:
        new_state = state.after_accepting(st.version, st.sha256, local)
        if new_state != state:
            write_state(state_dir, new_state)
    return Config(parsed, st.sha256, verified.signers, receipt=_Receipt(parsed, st.sha256, verified.signers))


def log_warnings(config: Config) -> None:
    """What a verified config leaves open (unpinned files, host rules without resolves_within)."""
    for warning in config_warnings(config.settings):
        log.warning("config: %s", warning)


def refused_sha256(path: Path) -> str | None:
    """The digest of a config that was refused, for the audit trail; None when it could not be read.

    The config cap bounds the read: up to the cap this equals the digest an accepted config is
    recorded with; a larger file was refused for its size and is named by its first cap + 1 bytes.
    """
    try:
        data = read_capped(path, MAX_CONFIG_BYTES)
    except OSError:
        return None
    return hashlib.sha256(data).hexdigest()


def fingerprint(path: Path) -> tuple[int, int, int, int]:
    """Cheap change detection for the runner's file watch: (mtime_ns, size) of the config and its .sig."""
    out: list[int] = []
    for p in (path, signature_path(path)):
        try:
            st = os.stat(p)
            out += [st.st_mtime_ns, st.st_size]
        except OSError:
            out += [0, -1]
    return out[0], out[1], out[2], out[3]


@dataclass(frozen=True)
class ReloadOutcome:
    config: Config
    changed: bool
    reason: str | None = None  # why a reload was refused; None when it succeeded or nothing changed


def try_reload(
    current: Config,
    path: Path,
    state_dir: Path,
    now: dt.datetime,
    audit: AuditSink,
    expected_name: str | None = None,
) -> ReloadOutcome:
    """Verify the config on disk again; on any failure keep ``current``, log why and audit it.

    A reload may never change the appliance name: it defaults to the running config's.
    """
    name = expected_name or current.appliance.name
    try:
        new = load_verified_config(path, state_dir, now, expected_name=name, commit=True)
    except (HardeningError, ConfigError) as e:
        log.warning("config reload refused, keeping version %d: %s", current.version, e)
        audit.record(
            "config.reload_refused",
            {"kept_version": current.version, "reason": str(e)[:500], "config_sha256": refused_sha256(path)},
        )
        return ReloadOutcome(current, False, str(e))
    if new.sha256 == current.sha256:
        return ReloadOutcome(current, False)
    log.info("config reloaded: version %d -> %d", current.version, new.version)
    log_warnings(new)
    audit.record(
        "config.reloaded",
        {
            "previous_version": current.version,
            "config_version": new.version,
            "config_sha256": new.sha256,
            "signers": list(new.signers),
            "expires": format_time(new.settings.expires),
        },
    )
    return ReloadOutcome(new, True)
