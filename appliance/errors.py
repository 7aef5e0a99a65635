"""The one exception root of the appliance package; each subtree maps to a CLI exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class ApplianceError(Exception):
    """Base of every error the appliance reports. The message says what is wrong and what to do."""

    exit_code = EXIT_CHECK_FAILED


class UsageError(ApplianceError):
    """The command line or a file the user wrote is not usable as given."""

    exit_code = EXIT_USAGE


class ConfigError(ApplianceError):
    """The config file is malformed, or fails a check."""

    exit_code = EXIT_CHECK_FAILED


class InstanceError(ApplianceError):
    """The instance could not be reached or answered with an error."""

    exit_code = EXIT_UNREACHABLE


class InstanceAuthError(InstanceError):
    """The instance refused our credentials (401/403)."""


class PayloadError(ApplianceError):
    """An ECC payload is malformed, hostile or too large; the job gets an error result."""


class ProbeError(ApplianceError):
    """A probe could not complete; the message becomes the error result's one-line reason."""


class TargetUnreachable(ProbeError):
    """The target did not answer (refused, unreachable, timed out): counted by its circuit breaker."""


class RunnerHalted(ApplianceError):
    """Something the appliance cannot work without failed (the audit log, the disk): it stopped claiming."""


class TargetDenied(ProbeError):
    """The signed policy does not allow this probe against this target."""


class CredentialRejected(ProbeError):
    """The target refused this credential (authentication failed): the next candidate may be tried."""


class EveryCredentialRejected(ProbeError):
    """The target refused every candidate credential (none was left to try)."""
