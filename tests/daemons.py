"""Real OpenSSH and net-snmp daemons on 127.0.0.1 for probe tests and benchmarks.

Each daemon gets its own config, keys and state in a temporary directory and is stopped by the
fixture that started it. A missing binary is a clear failure, not a skip: CI installs them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSH_USER = "midbox-probe-test"
SNMP_COMMUNITY = "midbox-ro-test"
SNMP_V3_USER = "midboxv3"
SNMP_V3_AUTH = "auth-pass-for-tests"
SNMP_V3_PRIV = "priv-pass-for-tests"
SNMP_INDEX = 7  # community@7: Cisco-style community indexing (a VLAN)


def require(binary: str, package: str) -> str:
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        pytest.fail(f"{binary} not found: install the Debian package {package} (CI does)", pytrace=False)
    return path


def free_port(preferred: int, kind: int = socket.SOCK_STREAM) -> int:
    """``preferred`` if nothing listens there on 127.0.0.1, else a free port from the kernel."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port on 127.0.0.1")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass(frozen=True)
class SshServer:
    port: int
    user: str
    password: str
    host_key_pub: Path  # the server's public host key (what an admin would pin)
    client_key: Path  # an ed25519 private key authorised for ``user``
    client_key_encrypted: Path  # the same user's RSA key, encrypted with ``client_key_passphrase``
    client_key_passphrase: str
    directory: Path


def _ensure_user(user: str, password: str) -> Path:
    try:
        home = Path(pwd.getpwnam(user).pw_dir)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", user], check=True, capture_output=True)
        home = Path(pwd.getpwnam(user).pw_dir)
    # chpasswd reads "user:password" on stdin, so the password never appears in argv.
    subprocess.run(["chpasswd"], input=f"{user}:{password}\n".encode(), check=True, capture_output=True)
    return home


def _keygen(path: Path, kind: str, passphrase: str = "") -> None:
    args = ["ssh-keygen", "-q", "-t", kind, "-f", str(path), "-N", passphrase, "-C", "midbox-test"]
    if kind == "rsa":
        args[4:4] = ["-b", "2048", "-m", "PEM"]
    subprocess.run(args, check=True, capture_output=True)


@contextlib.contextmanager
def run_sshd(directory: Path, preferred_port: int = 2222) -> Iterator[SshServer]:
    sshd = require("sshd", "openssh-server")
    require("ssh-keygen", "openssh-client")
    if os.geteuid() != 0:
        pytest.fail("the sshd fixture needs root (to create the test user and run sshd)", pytrace=False)
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    home = _ensure_user(SSH_USER, password)
    host_key = directory / "ssh_host_ed25519_key"
    _keygen(host_key, "ed25519")
    client_key = directory / "client_ed25519"
    _keygen(client_key, "ed25519")
    client_key_enc = directory / "client_rsa_enc"
    passphrase = secrets.token_urlsafe(12)
    _keygen(client_key_enc, "rsa", passphrase)
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    auth_keys = ssh_dir / "authorized_keys"
    auth_keys.write_text(
        Path(f"{client_key}.pub").read_text() + Path(f"{client_key_enc}.pub").read_text(), encoding="utf-8"
    )
    pw = pwd.getpwnam(SSH_USER)
    for p in (ssh_dir, auth_keys):
        os.chown(p, pw.pw_uid, pw.pw_gid)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    port = free_port(preferred_port)
    conf = directory / "sshd_config"
    conf.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {directory / 'sshd.pid'}",
                "StrictModes no",
                "MaxStartups 200:30:400",
                "MaxSessions 200",
                "PasswordAuthentication yes",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "AuthorizedKeysFile .ssh/authorized_keys",
                "UsePAM no",
                "PermitRootLogin no",
                f"AllowUsers {SSH_USER}",
                "UseDNS no",
                "PrintMotd no",
                "LogLevel ERROR",
                "",
            ]
        ),
        encoding="utf-8",
    )
    log = (directory / "sshd.log").open("wb")
    proc = subprocess.Popen([sshd, "-D", "-f", str(conf), "-e"], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_tcp_banner(port, proc, directory / "sshd.log")
        yield SshServer(
            port=port,
            user=SSH_USER,
            password=password,
            host_key_pub=Path(f"{host_key}.pub"),
            client_key=client_key,
            client_key_encrypted=client_key_enc,
            client_key_passphrase=passphrase,
            directory=directory,
        )
    finally:
        _stop(proc)
        log.close()


def _wait_tcp_banner(port: int, proc: subprocess.Popen[bytes], logfile: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"sshd exited at start: {logfile.read_text(errors='replace')[-500:]}", pytrace=False)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    pytest.fail("sshd did not start listening within 10 s", pytrace=False)


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
        _stop(proc)
        log.close()
