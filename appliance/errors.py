"""The appliance's errors, and the map of every error midbox reports.

    MidboxError (hardening.errors)        exit_code; a one-line message naming the fix
    ├── HardeningError                    a security check failed (exit 1)
    │   ├── AuditError, SigningError, VaultError, ReleaseError, TLSConfigError, ...
    │   └── (one subtree per hardening mechanism, each in its own errors module)
    └── ApplianceError                    the runtime (exit 1 unless below)
        ├── UsageError                    the command line or a file the user wrote (exit 2)
        ├── ConfigError                   a config that does not parse or verify (exit 1)
        ├── InstanceError                 the instance unreachable or refusing (exit 3); retry_after_s
        │   └── InstanceAuthError, InstanceBusyError, AnswerTooLargeError, UnusableRecordError
        ├── PayloadError                  an ECC payload malformed, hostile or too large
        ├── ProbeError                    a probe could not complete: the job's error result
        │   └── TargetDeniedError, TargetUnreachableError, CredentialRejectedError, RateLimitedError, ...
        └── RunnerHaltedError, HostServiceError, ScmError, ServiceControlError, ConfigPushRefusedError

``appliance.cli.main`` catches ``MidboxError`` once and exits with its ``exit_code``.
"""

from __future__ import annotations

from hardening.errors import EXIT_CHECK_FAILED, MidboxError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

__all__ = ["EXIT_CHECK_FAILED", "EXIT_OK", "EXIT_UNREACHABLE", "EXIT_USAGE", "ApplianceError", "MidboxError"]


class ApplianceError(MidboxError):
    """Base of every error the appliance reports. The message says what is wrong and what to do."""

    exit_code = EXIT_CHECK_FAILED


class UsageError(ApplianceError):
    """The command line or a file the user wrote is not usable as given."""

    exit_code = EXIT_USAGE


class ConfigError(ApplianceError):
    """The config file is malformed, or fails a check."""

    exit_code = EXIT_CHECK_FAILED


class InstanceError(ApplianceError):
    """The instance could not be reached or answered with an error.

    ``retry_after_s`` is when the instance asked to be tried again (its Retry-After), if it did."""

    exit_code = EXIT_UNREACHABLE
    retry_after_s: float | None = None


class InstanceAuthError(InstanceError):
    """The instance refused our credentials (401/403)."""


class PayloadError(ApplianceError):
    """An ECC payload is malformed, hostile or too large; the job gets an error result."""


class ProbeError(ApplianceError):
    """A probe could not complete; the message becomes the error result's one-line reason."""


class TargetUnreachableError(ProbeError):
    """The target did not answer (refused, unreachable, timed out): counted by its circuit breaker."""


class RunnerHaltedError(ApplianceError):
    """Something the appliance cannot work without failed (the audit log, the disk): it stopped claiming."""


class TargetDeniedError(ProbeError):
    """The signed policy does not allow this probe against this target."""


class CredentialRejectedError(ProbeError):
    """The target refused this credential (authentication failed): the next candidate may be tried."""


class EveryCredentialRejectedError(ProbeError):
    """The target refused every candidate credential (none was left to try)."""


def is_fatal(error: BaseException) -> bool:
    """Errors of what every job depends on (the audit log, the disk): going on would do work that is
    not accounted for. Anything else belongs to one job and ends as that job's error result."""
    from hardening.audit.errors import AuditValueError
    from hardening.errors import HardeningError

    return isinstance(error, (HardeningError, OSError)) and not isinstance(error, AuditValueError)


def describe(error: BaseException) -> str:
    """Our own errors carry user-facing messages; anything else is named by type only (it may hold data)."""
    if isinstance(error, MidboxError):
        return f"{type(error).__name__}: {error}"
    return f"unexpected {type(error).__name__}"
