"""Hostile SSH servers (tests/support/hostile_ssh.py): each ends in a clean error, soon and small.

paramiko's banner read joins 128-byte reads until a newline and times out per read, not per line: an
endless banner was read for as long as the server kept sending (until the probe's whole budget ran
out), growing one buffer in quadratic time.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from appliance.errors import ProbeError
from appliance.limits import SSH_BANNER_BYTES, Limits
from appliance.probes.ssh import SshProbe
from hardening.policy import Policy
from tests.probes.conftest import MemCredential, MemCredentials, loopback_rule, make_ctx, make_job
from tests.support.hostile_ssh import HostileSshServer, hostile_ssh_server

TIMEOUT_MS = 5000  # the job's timeout: connect, banner, key exchange and login each get this long


def run_job(server: HostileSshServer, tmp_path: Path) -> tuple[BaseException | ET.Element, float, int]:
    """What the probe answered, how long it took, and the peak traced memory."""
    creds = MemCredentials(MemCredential("pw", "ssh-password", "root", (b"x",)))
    ctx = make_ctx(
        Policy([loopback_rule(("ssh",), ((server.port, server.port),), ("pw",))]),
        creds,
        tmp_path,
        Limits(probe_timeout_s=20),
    )
    job = make_job(
        "SSHCommand", "true", "127.0.0.1", port=str(server.port), credential="pw", timeout=str(TIMEOUT_MS)
    )
    probe = SshProbe()

    async def go() -> ET.Element:
        try:
            return await probe.run(job, ctx)
        finally:
            await probe.aclose()

    tracemalloc.start()
    start = time.monotonic()
    try:
        outcome: BaseException | ET.Element = asyncio.run(go())
    except ProbeError as e:
        outcome = e
    finally:
        elapsed = time.monotonic() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return outcome, elapsed, peak


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("endless", "without an SSH version line"),
        ("lines", "without an SSH version line|Indecipherable protocol version"),
        ("ignore", "before authentication"),
        ("garbage", "ssh protocol error"),
    ],
)
def test_a_hostile_ssh_server_is_cut_off_by_bytes(tmp_path: Path, mode: str, error: str) -> None:
    with hostile_ssh_server("garbage") as server:
        run_job(server, tmp_path)  # what the first session costs once (paramiko's lazy imports)
    with hostile_ssh_server(mode) as server:
        outcome, elapsed, peak = run_job(server, tmp_path)
    print(f"\n{mode}: {elapsed:.2f} s, server sent {server.sent / 1e6:.1f} MB, peak {peak / 1e6:.1f} MB")
    assert isinstance(outcome, ProbeError), outcome
    assert outcome.__class__ is ProbeError
    import re

    assert re.search(error, str(outcome)), str(outcome)
    # Cut off by the byte caps long before the job's 5 s timeout, at a few MiB of memory.
    assert elapsed < 2.5, elapsed
    assert peak < 4 * 2**20 + 4 * SSH_BANNER_BYTES, peak


def test_a_dripping_banner_ends_at_the_job_timeout(tmp_path: Path) -> None:
    with hostile_ssh_server("drip") as server:
        outcome, elapsed, peak = run_job(server, tmp_path)
    assert isinstance(outcome, ProbeError), outcome
    assert "timed out" in str(outcome) or "banner" in str(outcome), str(outcome)
    assert elapsed < TIMEOUT_MS / 1000 * 3 + 2, elapsed
    assert peak < 4 * 2**20, peak
