"""Restart the appliance through whatever supervises it: systemd, the Windows SCM, or a command.

The command mode serves any other supervisor (runit's ``sv restart``, s6, supervisord, a container
runtime): it runs as given, without a shell, and must return once the restart is under way.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass

from appliance.limits import UPGRADE_RESTART_TIMEOUT_S
from appliance.upgrade.state import UpgradeError

MANAGERS = ("systemd", "scm", "command")


@dataclass(frozen=True)
class Restarter:
    manager: str
    service: str
    command: tuple[str, ...] = ()
    timeout_s: float = UPGRADE_RESTART_TIMEOUT_S

    def restart(self) -> None:
        if self.manager == "scm":
            self._scm()
        elif self.manager == "systemd":
            from appliance.systemd import Systemd, check_service_name

            systemd = Systemd.detect(None)
            if not systemd.running:
                raise UpgradeError(
                    "systemd does not run on this host: give --restart-command for the supervisor of midbox"
                )
            unit = f"{check_service_name(self.service)}.service"
            # A failed new version may have used up the start limit; the rollback's restart must not
            # be refused for that. Nothing to reset is fine.
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(  # noqa: S603 - fixed argv, no shell
                    systemd.command("reset-failed", unit),
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=self.timeout_s,
                    check=False,
                )
            # Type=notify: this returns once the new process said READY=1 (its first successful poll),
            # or fails after the unit's TimeoutStartSec= (80 s, under our timeout).
            self._run(systemd.command("restart", unit))
        elif self.manager == "command" and self.command:
            self._run(list(self.command))
        else:
            raise UpgradeError(f"no way to restart {self.service!r}: give --restart-command")

    def _run(self, argv: list[str]) -> None:
        try:
            done = subprocess.run(  # noqa: S603 - argv from the operator's own command line, no shell
                argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=self.timeout_s, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise UpgradeError(
                f"the restart command {argv[0]} failed ({type(e).__name__}): check it by hand"
            ) from e
        if done.returncode != 0:
            # runit's sv says why on stdout, systemctl on stderr
            said = (done.stderr or done.stdout).decode("utf-8", "replace").strip().splitlines()[:1]
            raise UpgradeError(
                f"the restart command {argv[0]} exited {done.returncode}"
                + (f" ({said[0][:200]})" if said else "")
                + ": check the service with its manager"
            )

    def _scm(self) -> None:
        if os.name != "nt":
            raise UpgradeError("the Windows SCM is only on Windows: give --restart-command here")
        from appliance.winscm import Scm

        scm = Scm()
        scm.stop(self.service, self.timeout_s)
        scm.start(self.service)
