"""Errors of the audit log. All derive from HardeningError, so the CLI prints them as one line."""

from __future__ import annotations

from hardening.errors import HardeningError


class AuditError(HardeningError):
    """The audit log could not be written or read."""


class AuditValueError(AuditError, ValueError):
    """An event or one of its fields cannot be recorded as given (not JSON-safe, too large, a secret)."""


class AuditWriteError(AuditError):
    """An entry could not reach disk; the appliance must stop doing work it cannot account for."""


class AuditLogBusyError(AuditError):
    """Another process holds the audit log open for writing."""


class AuditLogDamagedError(AuditError):
    """The end of the log cannot be read, so no entry can be chained to it."""


class CheckpointError(AuditError):
    """A checkpoint file is malformed, oversized or its signature does not verify."""


class SigningKeyError(AuditError):
    """The appliance's audit signing key is missing, unreadable or readable by others."""
