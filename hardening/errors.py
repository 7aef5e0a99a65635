"""The one exception root of the hardening package."""


class HardeningError(Exception):
    """A security check failed or a protected file could not be used.

    The message is one line for the user: what is wrong and what to do about it.
    """
