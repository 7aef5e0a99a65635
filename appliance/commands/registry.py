"""The list of command groups. A new group adds one import and one entry here."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from appliance.commands import bundle

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]", argparse.ArgumentParser], None]

REGISTRARS: tuple[Registrar, ...] = (bundle.register,)
