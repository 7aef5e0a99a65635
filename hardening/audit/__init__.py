"""Tamper-evident audit log: a hash chain on the host, anchored off it by signed checkpoints.

Writer: ``AuditLog`` / ``open_audit_log``. Checkpoints: ``load_or_create_signing_key``,
``AuditLog.checkpoint``, ``checkpoint_xml`` / ``parse_checkpoint_xml`` / ``verify_checkpoint``.
Readers: ``verify_log`` and ``iter_runs``. Event vocabulary: ``hardening.audit.events``.
"""

from hardening.audit._files import audit_dir
from hardening.audit.checkpoint import (
    TOPIC,
    Checkpoint,
    UnverifiedCheckpoint,
    checkpoint_xml,
    parse_checkpoint_xml,
    sign_checkpoint,
    verify_checkpoint,
)
from hardening.audit.errors import (
    AuditError,
    AuditLogBusyError,
    AuditLogDamagedError,
    AuditValueError,
    AuditWriteError,
    CheckpointError,
    SigningKeyError,
)
from hardening.audit.events import EVENTS
from hardening.audit.log import AuditLog, AuditOptions, open_audit_log
from hardening.audit.signing import load_or_create_signing_key, load_public_key, public_key_pem
from hardening.audit.verify import Verdict, VerifyReport, verify_log

__all__ = [
    "EVENTS",
    "TOPIC",
    "AuditError",
    "AuditLog",
    "AuditLogBusyError",
    "AuditLogDamagedError",
    "AuditOptions",
    "AuditValueError",
    "AuditWriteError",
    "Checkpoint",
    "CheckpointError",
    "SigningKeyError",
    "UnverifiedCheckpoint",
    "Verdict",
    "VerifyReport",
    "audit_dir",
    "checkpoint_xml",
    "load_or_create_signing_key",
    "load_public_key",
    "open_audit_log",
    "parse_checkpoint_xml",
    "public_key_pem",
    "sign_checkpoint",
    "verify_checkpoint",
    "verify_log",
]
