"""Stand-ins for the appliance's IO seams that only tests use."""

from __future__ import annotations

from appliance.errors import ProbeError
from appliance.interfaces import Credential


class NoCredentials:
    """The credential source of an appliance with no store: every lookup fails clearly."""

    def lookup(self, alias: str) -> Credential:
        raise ProbeError(
            f"credential {alias!r} is not in this appliance's store; add it with 'midbox creds add'"
        )
