"""The one exception root of midbox, and the hardening package's own base under it.

Every error a user can see derives from ``MidboxError``: its message is one line that says what is
wrong and what to do, and ``exit_code`` is what the command line exits with. The whole tree is drawn
in ``appliance/errors.py``, where both packages' branches are visible.
"""

EXIT_CHECK_FAILED = 1


class MidboxError(Exception):
    """Base of every error midbox reports. The message names the fix."""

    exit_code = EXIT_CHECK_FAILED


class HardeningError(MidboxError):
    """A security check failed or a protected file could not be used (exit 1).

    The message is one line for the user: what is wrong and what to do about it.
    """
