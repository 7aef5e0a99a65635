"""The checks of a start, in the order of trust: the config verified, the certificate this
appliance's, and what binary is running, each recorded in the audit log."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import sys
from pathlib import Path

from appliance.config.delivered import finish_interrupted
from appliance.config.model import Config
from appliance.config.verify import load_verified_config, log_warnings, refused_sha256
from appliance.errors import ConfigError
from hardening.audit import AuditLog
from hardening.errors import HardeningError
from hardening.utctime import format_time

log = logging.getLogger("appliance.service")


def client_identity(config: Config, audit: AuditLog, key_password: bytes) -> str | None:
    """Finish a certificate renewal a crash interrupted (``midbox enroll``), check the certificate
    names this appliance, then return its SHA-256, so the audit log says which identity did the work."""
    key, cert = config.instance.client_key, config.instance.client_cert
    if key is None or cert is None:
        return None
    from hardening.enroll.store import EnrollError, EnrollPaths, finish_interrupted_swap

    try:
        done = finish_interrupted_swap(EnrollPaths(key, cert, key_password))
    except (EnrollError, OSError) as e:
        log.warning("could not finish an interrupted certificate renewal: %s", e)
        done = None
    if done:
        log.info("certificate renewal completed at start: %s", done)
    from cryptography.hazmat.primitives import hashes

    from hardening.identity import check_certificate_file

    try:
        leaf = check_certificate_file(cert, config.appliance.name)
    except HardeningError as e:
        audit.record("error", {"where": "start", "message": str(e)})
        raise
    # SHA-256 of the leaf, as `midbox enroll` prints it.
    return leaf.fingerprint(hashes.SHA256()).hex()


def first_config(config_path: Path, state_dir: Path, audit: AuditLog) -> Config:
    try:
        # A config delivered through the instance whose swap a crash interrupted is completed first.
        if finish_interrupted(config_path):
            log.warning("completed the install of a config delivered before the last stop")
        config = load_verified_config(config_path, state_dir, dt.datetime.now(dt.UTC))
    except (HardeningError, ConfigError) as e:
        refused = {"config_sha256": refused_sha256(config_path), "reason": str(e)}
        audit.record("config.refused", refused)
        raise
    log_warnings(config)
    audit.record(
        "config.accepted",
        {
            "config_version": config.version,
            "config_sha256": config.sha256,
            "signers": list(config.signers),
            "expires": format_time(config.settings.expires),
        },
    )
    return config


def binary_sha256() -> str:
    """What is running: the frozen binary's digest, or "source" for a source checkout."""
    if not getattr(sys, "frozen", False):
        return "source"
    digest = hashlib.sha256()
    with open(sys.executable, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
