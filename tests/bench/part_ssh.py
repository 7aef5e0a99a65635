"""Group 4, SSH against a real OpenSSH sshd: 50 commands over one connection vs one ControlMaster;
50 new connections vs ``ssh`` x50 in parallel, with ssh's own defaults and with midbox's key exchange.

Both sides log in as the same user with the same ed25519 key and run the same command. ssh's default
key exchange on OpenSSH 9.2 is the post-quantum hybrid sntrup761x25519, whose client key generation
costs about 60 ms of CPU per connection; paramiko has no sntrup761 (it offers mlkem768x25519, which
9.2 lacks), so midbox gets curve25519. The third row pins ssh to curve25519-sha256 as well.

The last three rows say where the CPU of the new connections goes, per connection: midbox's own
against one ``ssh`` process's, and what the rest of the machine spent meanwhile (sshd, the login
shells, the kernel's loopback). That rest alone, spread over every core, is the floor: the time of
a client that cost nothing, and its ratio is the best any client could show against ``ssh`` x50.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from appliance.limits import Limits
from appliance.probes.ssh import SshProbe
from devinstance.sshd import SshServer, run_sshd
from hardening.known_hosts import KnownHosts, parse_public_key_file
from hardening.policy import Policy
from tests.bench.common import ENV, CpuSplit, Row, Sizes, cpu_count, cpu_split, median, timed, tool
from tests.probes.conftest import MemCredential, MemCredentials, loopback_rule, make_ctx, make_job

GROUP = "4 ssh"
ROWS = (
    "50 commands over one connection",
    "50 new connections in parallel",
    "50 new connections in parallel, ssh with midbox's kex",
    "50 new connections, client CPU per connection",
    "50 new connections, sshd's CPU per connection",
    "50 new connections, the floor: sshd's CPU alone over every core",
)  # --quick: 5
SAME_KEX = "curve25519-sha256"  # what midbox negotiates with OpenSSH 9.2 (no ML-KEM there)


def _openssh(s: SshServer, state: Path) -> list[str]:
    kh = state / "openssh_known_hosts"
    kind, key = s.host_key_pub.read_text().split()[:2]
    kh.write_text(f"[127.0.0.1]:{s.port} {kind} {key}\n")
    return ["ssh", "-F", "/dev/null", "-p", str(s.port), "-i", str(s.client_key), "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={kh}", "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes",
            f"{s.user}@127.0.0.1"]  # fmt: skip


def _mux(base: list[str], state: Path, n: int) -> float:
    ctl = state / "ctl"
    master = subprocess.Popen(
        [*base[:-1], "-M", "-N", "-o", f"ControlPath={ctl}", base[-1]],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not ctl.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the OpenSSH ControlMaster did not start")
            time.sleep(0.02)
        cmd = [*base[:-1], "-o", f"ControlPath={ctl}", base[-1], "true"]
        return timed(lambda: [subprocess.run(cmd, check=True, env=ENV, timeout=60) for _ in range(n)])
    finally:
        master.terminate()
        master.wait()
        with contextlib.suppress(FileNotFoundError):
            ctl.unlink()


def _parallel(base: list[str], n: int) -> tuple[float, CpuSplit]:
    def go() -> None:
        procs = [subprocess.Popen([*base, "true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
                 for _ in range(n)]  # fmt: skip
        codes = [p.wait(timeout=120) for p in procs]  # a hang fails the part, not the whole run
        if any(codes):
            raise RuntimeError(f"OpenSSH ssh failed: exit codes {sorted(set(codes))}")

    return cpu_split(go)


def run(sizes: Sizes) -> Iterator[Row]:
    if os.geteuid() != 0 or tool("sshd") is None:
        why = "n/a: run as root with openssh-server installed"
        yield from (Row(GROUP, r, na=why) for r in ROWS)
        return
    n = sizes.pick(5, 50)
    # A login user of this process only: a concurrent test run must not reset its password and keys.
    with run_sshd(sizes.work / "sshd", user=f"midbox-bench-{os.getpid()}") as s:
        state = sizes.work
        host_key = parse_public_key_file(s.host_key_pub.read_bytes(), source="pub")
        KnownHosts(state / "known_hosts").pin("127.0.0.1", s.port, host_key)
        creds = MemCredentials(MemCredential("key", "ssh-key", s.user, (s.client_key.read_bytes(),)))
        rule = loopback_rule(("ssh",), ((s.port, s.port),), ("key",))
        ctx = make_ctx(Policy([rule]), creds, state, Limits())
        job = make_job("SSHCommand", "true", "127.0.0.1", port=str(s.port), credential="key")

        def one_conn() -> float:
            async def go() -> None:
                probe = SshProbe()
                try:
                    await probe.run_commands(job, ctx, ["true"] * n)
                finally:
                    await probe.aclose()

            return timed(lambda: asyncio.run(go()))

        def new_conns() -> tuple[float, CpuSplit]:
            async def go() -> None:
                probe = SshProbe(max_connections=n, per_target=min(16, n))
                try:
                    await asyncio.gather(*(probe.run(job, ctx) for _ in range(n)))
                finally:
                    await probe.aclose()

            return cpu_split(lambda: asyncio.run(go()))

        base = _openssh(s, state)
        peer = f"OpenSSH sshd, {n} x 'true', key auth"
        a = [_step("one connection", one_conn) for _ in range(sizes.runs)]
        b = [_step("ControlMaster", lambda: _mux(base, state, n)) for _ in range(sizes.runs)]
        yield Row(GROUP, ROWS[0], median(a), "s", peer, ratio=median(a) / median(b),
                  versus=f"OpenSSH ControlMaster: {median(b):.3g} s", runs=sizes.runs)  # fmt: skip
        same_kex = [*base[:-1], "-o", f"KexAlgorithms={SAME_KEX}", base[-1]]
        c: list[tuple[float, CpuSplit]] = []
        d: list[tuple[float, CpuSplit]] = []
        e: list[float] = []
        for _ in range(sizes.runs):  # interleaved, so a load change hits the three alike
            c.append(_split_step("new connections", new_conns))
            d.append(_split_step("ssh in parallel", lambda: _parallel(base, n)))
            e.append(_split_step(f"ssh in parallel, {SAME_KEX}", lambda: _parallel(same_kex, n))[0])
        ours, theirs = median([t for t, _ in c]), median([t for t, _ in d])
        conns = peer + f", per-target cap {min(16, n)}"
        yield Row(GROUP, ROWS[1], ours, "s", conns + "; ssh's default kex sntrup761x25519, midbox curve25519",
                  ratio=ours / theirs, versus=f"ssh x{n} in parallel: {theirs:.3g} s", runs=sizes.runs)  # fmt: skip
        yield Row(GROUP, ROWS[2], ours, "s", conns + f"; both {SAME_KEX}", ratio=ours / median(e),
                  versus=f"ssh x{n} in parallel, -o KexAlgorithms={SAME_KEX}: {median(e):.3g} s", runs=sizes.runs)  # fmt: skip
        yield from _cpu_rows(n, c, d, theirs, sizes.runs)


def _cpu_rows(
    n: int,
    ours: list[tuple[float, CpuSplit]],
    theirs: list[tuple[float, CpuSplit]],
    their_time: float,
    runs: int,
) -> Iterator[Row]:
    """Per connection: the client's CPU (midbox's process; the ``ssh`` processes), sshd's (the rest of the
    machine), and the floor that sshd's share alone sets on the two-sided ratio."""
    client = median([cpu.own_s for _, cpu in ours]) / n * 1000
    ssh_client = median([cpu.children_s for _, cpu in theirs]) / n * 1000
    server = median([cpu.rest_s for _, cpu in ours]) / n * 1000
    server_ssh = median([cpu.rest_s for _, cpu in theirs]) / n * 1000
    cores = cpu_count()
    floor = median([cpu.rest_s for _, cpu in ours]) / cores
    ratio = client / ssh_client if ssh_client else None  # no ssh CPU counted: no ratio, not a crash
    yield Row(GROUP, ROWS[3], client, "ms", "midbox's process (user + system), during its new-connections runs",
              ratio=ratio, versus=f"one ssh process (default kex): {ssh_client:.3g} ms", runs=runs)  # fmt: skip
    yield Row(GROUP, ROWS[4], server, "ms", "the rest of the machine while midbox ran: sshd, the login shells, "
              "the kernel's loopback", versus=f"while ssh x{n} ran: {server_ssh:.3g} ms", runs=runs)  # fmt: skip
    yield Row(GROUP, ROWS[5], floor, "s", f"sshd's CPU of midbox's runs over {cores} cores: the time of a client "
              "that cost nothing", ratio=floor / their_time, versus=f"ssh x{n} in parallel: {their_time:.3g} s",
              runs=runs)  # fmt: skip


def _step(label: str, fn: Callable[[], float]) -> float:
    took = fn()
    print(f"   ssh {label}: {took:.3f} s", file=sys.stderr, flush=True)  # progress, for a part near its limit
    return took


def _split_step(label: str, fn: Callable[[], tuple[float, CpuSplit]]) -> tuple[float, CpuSplit]:
    took, cpu = fn()
    print(f"   ssh {label}: {took:.3f} s", file=sys.stderr, flush=True)
    return took, cpu
