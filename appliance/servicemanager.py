"""The host's service manager for this platform (the one place that chooses)."""

from __future__ import annotations

import sys
from pathlib import Path

from appliance.hostservice import ServiceManager


def service_manager(unit_dir: Path | None) -> ServiceManager:
    if sys.platform == "win32":
        from appliance.winmanager import ScmManager

        return ScmManager()
    from appliance.systemd import SystemdManager

    return SystemdManager(unit_dir)
