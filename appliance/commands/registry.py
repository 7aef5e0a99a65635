"""The list of command groups. A new group adds one import and one entry here."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from appliance.commands import (
    audit,
    bundle,
    config_cmd,
    creds,
    doctor,
    enroll,
    hosts,
    keys,
    policy,
    quarantine,
    run,
    service,
    status,
    trust,
    upgrade,
)

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]", argparse.ArgumentParser], None]

REGISTRARS: tuple[Registrar, ...] = (
    keys.register,
    config_cmd.register,
    trust.register,
    policy.register,
    quarantine.register,
    hosts.register,
    audit.register,
    creds.register,
    bundle.register,
    upgrade.register,
    run.register,
    run.register_reload,
    status.register,
    service.register,
    doctor.register,
    enroll.register,
)
