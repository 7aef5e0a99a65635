"""The development instance as its own process, for the benchmarks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def start_instance(directory: Path, appliance: str = "edge-01") -> tuple[subprocess.Popen[str], str]:
    """Start ``midbox-dev-instance serve`` (no heartbeats of its own); return the process and its URL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devinstance",
            "serve",
            "--dir",
            str(directory),
            "--appliance",
            appliance,
            "--heartbeat-s",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    proc.stdout.readline()  # type: ignore[union-attr]  # the "listening on" line: it is up
    return proc, str(json.loads((directory / "instance.json").read_text())["url"])
