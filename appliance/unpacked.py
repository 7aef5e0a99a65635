"""The frozen binary's unpacked folder, kept whole for as long as the appliance runs.

A onefile binary unpacks its libraries into a temporary folder at start (``sys._MEIPASS``) and an
idle appliance loads some of them only when first needed: paramiko's native parts at the first
SSH job. Temp cleaners remove files nobody has read for a while (systemd-tmpfiles' age rules: 10
days on ``/tmp``, 30 on ``/var/tmp``, where the unit unpacks, on Debian 13 and RHEL, also inside a
unit's ``PrivateTmp``; Windows Storage Sense), and a job days later would then fail to load its probe.
So, while the appliance runs, a watch

1. reads one byte of every unpacked file every few hours, which keeps their access time fresh (a
   ``relatime`` mount updates it once it is a day old), so an age-based cleaner leaves them alone;
2. sees when a file is gone anyway (a cleaner that ignores access times, an operator's ``rm``); the
   appliance then stops with exit 1, keeping every result, so that its service manager starts it
   again and the new process unpacks afresh.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

UNPACKED_WATCH_S = 6 * 3600.0  # well under a day, so each file is read before relatime's day is out
MAX_UNPACKED_FILES = 20_000  # a PyInstaller folder holds a few hundred; more is not ours to walk


@dataclass(frozen=True)
class Unpacked:
    root: Path
    files: tuple[Path, ...]

    @classmethod
    def of_this_process(cls) -> Unpacked | None:
        """The unpacked folder of a onefile binary, or None when running from source."""
        bundle = getattr(sys, "_MEIPASS", None)
        if not getattr(sys, "frozen", False) or bundle is None:
            return None
        return cls.scan(Path(bundle))

    @classmethod
    def scan(cls, root: Path) -> Unpacked:
        files: list[Path] = []
        for directory, _dirs, names in os.walk(root):
            files.extend(Path(directory) / name for name in names)
            if len(files) >= MAX_UNPACKED_FILES:
                break
        return cls(root, tuple(sorted(files[:MAX_UNPACKED_FILES])))

    def refresh(self) -> list[Path]:
        """Read one byte of each file (the access time moves on); return the files that are gone."""
        gone: list[Path] = []
        for path in self.files:
            try:
                with path.open("rb") as f:
                    f.read(1)
            except FileNotFoundError:
                gone.append(path)
            except OSError:
                continue  # unreadable but there (permissions changed under us): not a cleaner's doing
        return gone

    def describe(self, gone: list[Path]) -> str:
        names = ", ".join(str(p.relative_to(self.root)) for p in gone[:3])
        more = f" and {len(gone) - 3} more" if len(gone) > 3 else ""
        return (
            f"{len(gone)} file(s) of the binary's unpacked folder {self.root} were removed ({names}{more}), "
            "probably by a temp cleaner: midbox stops so that its service manager starts it again and it "
            "unpacks afresh; if this repeats, exclude that folder from the cleaner"
        )


async def watch(
    unpacked: Unpacked,
    stop: asyncio.Event,
    on_gone: Callable[[str], None],
    every_s: float = UNPACKED_WATCH_S,
) -> None:
    """Refresh every ``every_s`` until ``stop``; call ``on_gone`` (once) with the reason if files vanish."""
    while True:
        try:
            await asyncio.wait_for(stop.wait(), every_s)
            return
        except TimeoutError:
            pass
        gone = await asyncio.to_thread(unpacked.refresh)
        if gone:
            on_gone(unpacked.describe(gone))
            return
