"""SSH probe helpers: stored credentials for the test sshd, a pinned host key, a job, one run."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path

from appliance.probes.base import Job, ProbeContext
from appliance.probes.ssh import SshProbe
from hardening.known_hosts import KnownHosts, parse_public_key_file
from tests.daemons import SshServer
from tests.probes.conftest import MemCredential, MemCredentials, make_job


def creds(server: SshServer) -> MemCredentials:
    return MemCredentials(
        MemCredential("pw", "ssh-password", server.user, (server.password.encode(),)),
        MemCredential("badpw", "ssh-password", server.user, (b"not-the-password",)),
        MemCredential("key", "ssh-key", server.user, (server.client_key.read_bytes(),)),
        MemCredential(
            "enckey",
            "ssh-key",
            server.user,
            (server.client_key_encrypted.read_bytes(), server.client_key_passphrase.encode()),
        ),
        MemCredential("community", "snmp-community", None, (b"public",)),
    )


def pinned_state(tmp_path: Path, server: SshServer, host: str = "127.0.0.1") -> Path:
    KnownHosts(tmp_path / "known_hosts").pin(
        host, server.port, parse_public_key_file(server.host_key_pub.read_bytes(), source="pub")
    )
    return tmp_path


def run(probe: SshProbe, job: Job, ctx: ProbeContext) -> ET.Element:
    async def go() -> ET.Element:
        try:
            return await probe.run(job, ctx)
        finally:
            await probe.aclose()

    return asyncio.run(go())


def job(server: SshServer, command: str, alias: str = "pw", host: str = "127.0.0.1", **extra: str) -> Job:
    return make_job("SSHCommand", command, host, port=str(server.port), credential=alias, **extra)
