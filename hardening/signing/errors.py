"""Errors of the config-signing mechanism, one subtree of HardeningError by failure domain."""

from __future__ import annotations

from hardening.errors import HardeningError


class SigningError(HardeningError):
    """Root of key, envelope, trust-root and rollback failures."""


class KeyFileError(SigningError):
    """A key file is unreadable, malformed, or its passphrase is wrong."""


class EnvelopeError(SigningError):
    """The signature file (CONFIG.sig) is missing, too large or malformed."""


class SignatureError(SigningError):
    """Signatures are missing, invalid, from unknown keys, or fewer than the threshold."""


class BindingError(SigningError):
    """The signed statement does not match the config bytes or this appliance."""


class ValidityError(SigningError):
    """The config is expired or not yet valid."""


class RollbackError(SigningError):
    """The config is older than one already accepted, or reuses its version with other bytes."""


class TrustRootError(SigningError):
    """The trust root is missing, malformed, replaced, or a rotation is not properly signed."""


class StepOrderError(SigningError):
    """A verification step was called out of order (a programming error, never user input)."""
