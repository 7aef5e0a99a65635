"""Many SNMP agents at once: one ``snmpsim-command-responder`` serving a synthetic device on N ports."""

from __future__ import annotations

import grp
import os
import pwd
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.bench.common import ENV, tool

COMMUNITY = "bench-sim"  # snmpsim serves a data file to the community of the same name
INTERFACES = 24


@dataclass(frozen=True)
class SimAgents:
    ports: tuple[int, ...]
    community: str
    oids: int


def _responder() -> str | None:
    beside = Path(sys.executable).parent / "snmpsim-command-responder"  # the dev venv's own
    return str(beside) if beside.exists() else tool("snmpsim-command-responder")


def snmprec() -> list[str]:
    """A switch-like device: the system group and an ifTable, in snmprec's OID|TAG|VALUE lines."""
    rows = [
        ("1.3.6.1.2.1.1.1.0", 4, "midbox bench simulated switch"),
        ("1.3.6.1.2.1.1.2.0", 6, "1.3.6.1.4.1.8072.3.2.10"),
        ("1.3.6.1.2.1.1.3.0", 67, "123456"),
        ("1.3.6.1.2.1.1.4.0", 4, "bench@example.invalid"),
        ("1.3.6.1.2.1.1.5.0", 4, "sim-switch"),
        ("1.3.6.1.2.1.1.6.0", 4, "loopback rack"),
        ("1.3.6.1.2.1.1.7.0", 2, "72"),
        ("1.3.6.1.2.1.2.1.0", 2, str(INTERFACES)),
    ]
    for col, tag, value in ((1, 2, "{i}"), (2, 4, "Gi0/{i}"), (3, 2, "6"), (4, 2, "1500"), (5, 66, "1000000000"),
                            (7, 2, "1"), (8, 2, "1"), (10, 65, "{i}000"), (16, 65, "{i}00")):  # fmt: skip
        rows += [(f"1.3.6.1.2.1.2.2.1.{col}.{i}", tag, value.format(i=i)) for i in range(1, INTERFACES + 1)]
    rows.sort(key=lambda r: tuple(int(x) for x in r[0].split(".")))
    return [f"{oid}|{tag}|{value}" for oid, tag, value in rows]


def _free_udp() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def agents(directory: Path, count: int) -> Iterator[SimAgents | None]:
    """``count`` agents on their own loopback UDP ports, or None where snmpsim is not installed."""
    responder = _responder()
    if responder is None:
        yield None
        return
    data, cache = directory / "data", directory / "cache"
    data.mkdir(parents=True, exist_ok=True)
    cache.mkdir(exist_ok=True)
    lines = snmprec()
    (data / f"{COMMUNITY}.snmprec").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ports = tuple(_free_udp() for _ in range(count))
    cmd = [responder, f"--data-dir={data}", f"--cache-dir={cache}", "--logging-method=null",
           # It must drop to some user; it stays the caller's, since the interpreter it imports from after
           # the drop (a pyenv under /root, say) may be unreadable to nobody. It listens on loopback only.
           f"--process-user={pwd.getpwuid(os.getuid()).pw_name}", f"--process-group={grp.getgrgid(os.getgid()).gr_name}",
           *(f"--agent-udpv4-endpoint=127.0.0.1:{p}" for p in ports)]  # fmt: skip
    env = {**ENV, "HOME": str(directory)}  # it reads HOME at start-up
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        _wait_ready(proc, ports[-1])
        yield SimAgents(ports, COMMUNITY, len(lines))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], port: int) -> None:
    snmpget = tool("snmpget")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"snmpsim-command-responder exited with {proc.returncode}")
        if snmpget is None:
            time.sleep(3)
            return
        cmd = [snmpget, "-v2c", "-c", COMMUNITY, "-r0", "-t0.5", f"udp:127.0.0.1:{port}", "1.3.6.1.2.1.1.5.0"]
        if subprocess.run(cmd, capture_output=True, env=ENV, check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError("snmpsim did not answer within 30 s")
