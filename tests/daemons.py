"""Real OpenSSH and net-snmp daemons on 127.0.0.1 for probe tests and benchmarks.

The sshd starter lives in devinstance.sshd (the demo starts the same one); here it fails the test.

Each daemon gets its own config, keys and state in a temporary directory and is stopped by the
fixture that started it. A missing binary is a clear failure, not a skip: CI installs them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devinstance.sshd import SSH_USER, DaemonError, SshServer, find_binary, free_port, stop
from devinstance.sshd import run_sshd as _run_sshd
from devinstance.sshd import run_sshd_new_host_key as _run_sshd_new_host_key

__all__ = [
    "SSH_USER",
    "SnmpServer",
    "SshServer",
    "free_port",
    "require",
    "run_snmpd",
    "run_sshd",
    "run_sshd_new_host_key",
]

SNMP_COMMUNITY = "midbox-ro-test"
SNMP_V3_USER = "midboxv3"
SNMP_V3_AUTH = "auth-pass-for-tests"
SNMP_V3_PRIV = "priv-pass-for-tests"
SNMP_INDEX = 7  # community@7: Cisco-style community indexing (a VLAN)


def require(binary: str, package: str) -> str:
    try:
        return find_binary(binary, package)
    except DaemonError as e:
        pytest.fail(f"{e} (CI does)", pytrace=False)


@contextlib.contextmanager
def run_sshd(directory: Path, preferred_port: int = 2222) -> Iterator[SshServer]:
    """The one sshd starter (devinstance.sshd, shared with the demo), failing the test on a start error."""
    # A login user of this test process's own: two test runs on one machine must not reset each
    # other's password and keys.
    try:
        with _run_sshd(directory, preferred_port, user=f"{SSH_USER}-{os.getpid()}") as server:
            yield server
    except DaemonError as e:
        pytest.fail(str(e), pytrace=False)


@contextlib.contextmanager
def run_sshd_new_host_key(
    server: SshServer, directory: Path, extra_config: tuple[str, ...] = ()
) -> Iterator[SshServer]:
    """A second sshd for ``server``'s user with a host key of its own (devinstance.sshd), failing the test."""
    try:
        with _run_sshd_new_host_key(server, directory, extra_config) as other:
            yield other
    except DaemonError as e:
        pytest.fail(str(e), pytrace=False)


@dataclass(frozen=True)
class SnmpServer:
    port: int
    community: str
    v3_user: str
    v3_auth: str  # SHA-256
    v3_priv: str  # AES (128)
    v3_user_aes256: str  # SHA-512 / AES-256 (Blumenthal key extension, net-snmp "AES-256")
    directory: Path
    index: int = 0  # COMMUNITY@INDEX is a second community that sees only the system group


@contextlib.contextmanager
def run_snmpd(directory: Path, preferred_port: int = 16161) -> Iterator[SnmpServer]:
    snmpd = require("snmpd", "snmpd")
    snmpget = require("snmpget", "snmp")
    directory.mkdir(parents=True, exist_ok=True)
    persist = directory / "persist"
    persist.mkdir(exist_ok=True)
    port = free_port(preferred_port, socket.SOCK_DGRAM)
    conf = directory / "snmpd.conf"
    conf.write_text(
        "\n".join(
            [
                f"rocommunity {SNMP_COMMUNITY} 127.0.0.1",
                # Cisco-style community indexing (community@VLAN): this one sees the system group only.
                f"rocommunity {SNMP_COMMUNITY}@{SNMP_INDEX} 127.0.0.1 .1.3.6.1.2.1.1",
                f'createUser {SNMP_V3_USER} SHA-256 "{SNMP_V3_AUTH}" AES "{SNMP_V3_PRIV}"',
                f'createUser {SNMP_V3_USER}x SHA-512 "{SNMP_V3_AUTH}" AES-256 "{SNMP_V3_PRIV}"',
                f"rouser {SNMP_V3_USER} priv",
                f"rouser {SNMP_V3_USER}x priv",
                "sysLocation midbox test rack",
                "sysContact probes@example.invalid",
                "",
            ]
        ),
        encoding="utf-8",
    )
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "SNMP_PERSISTENT_DIR": str(persist),
        "MIBS": "",
        "HOME": str(directory),
    }
    log = (directory / "snmpd.log").open("wb")
    proc = subprocess.Popen(
        [snmpd, "-f", "-C", "-c", str(conf), "-I", "-smux", "-Lo", f"udp:127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"snmpd exited at start: {(directory / 'snmpd.log').read_text()[-500:]}", pytrace=False
                )
            r = subprocess.run(
                [
                    snmpget,
                    "-v2c",
                    "-c",
                    SNMP_COMMUNITY,
                    "-t",
                    "0.3",
                    "-r",
                    "0",
                    "-On",
                    f"udp:127.0.0.1:{port}",
                    "1.3.6.1.2.1.1.1.0",
                ],
                capture_output=True,
                env=env,
            )
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.fail("snmpd did not answer within 10 s", pytrace=False)
            time.sleep(0.1)
        yield SnmpServer(
            port=port,
            community=SNMP_COMMUNITY,
            v3_user=SNMP_V3_USER,
            v3_auth=SNMP_V3_AUTH,
            v3_priv=SNMP_V3_PRIV,
            v3_user_aes256=f"{SNMP_V3_USER}x",
            directory=directory,
            index=SNMP_INDEX,
        )
    finally:
        stop(proc)
        log.close()
