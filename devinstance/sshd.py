"""A real OpenSSH sshd on 127.0.0.1 with its own config, keys and user: for the tests and the demo.

One copy serves both (tests/daemons.py wraps it for pytest). It needs root, as sshd does to switch
to the login user; every failure is a DaemonError whose message names the fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import secrets
import shutil
import socket
import subprocess  # nosec B404
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SSH_USER = "midbox-probe-test"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class DaemonError(RuntimeError):
    """A local daemon could not be started; the message says what to install or change."""


def find_binary(binary: str, package: str) -> str:
    path = shutil.which(binary) or shutil.which(binary, path=SYSTEM_PATH)
    if path is None:
        raise DaemonError(f"{binary} not found: install the Debian package {package}")
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
    raise DaemonError("no free port on 127.0.0.1: stop something listening there")


def stop(proc: subprocess.Popen[bytes]) -> None:
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


def _ensure_user(user: str, password: str) -> tuple[Path, bool]:
    """The user's home, and whether this call created the user (then it is removed afterwards)."""
    created = False
    try:
        home = Path(pwd.getpwnam(user).pw_dir)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", user], check=True, capture_output=True)  # noqa: S603 S607  # nosec B603 B607
        home = Path(pwd.getpwnam(user).pw_dir)
        created = True
    # chpasswd reads "user:password" on stdin, so the password never appears in argv.
    subprocess.run(["chpasswd"], input=f"{user}:{password}\n".encode(), check=True, capture_output=True)  # noqa: S607  # nosec B603 B607
    return home, created


def _keygen(path: Path, kind: str, passphrase: str = "") -> None:
    args = ["ssh-keygen", "-q", "-t", kind, "-f", str(path), "-N", passphrase, "-C", "midbox-test"]
    if kind == "rsa":
        args[4:4] = ["-b", "2048", "-m", "PEM"]
    subprocess.run(args, check=True, capture_output=True)  # noqa: S603  # nosec B603


def _config(port: int, directory: Path, host_key: Path, user: str) -> str:
    return "\n".join(
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
            f"AllowUsers {user}",
            "UseDNS no",
            "PrintMotd no",
            "LogLevel ERROR",
            "",
        ]
    )


@contextlib.contextmanager
def run_sshd(directory: Path, preferred_port: int = 2222, user: str = SSH_USER) -> Iterator[SshServer]:
    """sshd on 127.0.0.1 (``preferred_port`` if free) for ``user``, created with a fresh password."""
    sshd = find_binary("sshd", "openssh-server")
    find_binary("ssh-keygen", "openssh-client")
    if os.geteuid() != 0:
        raise DaemonError("a local sshd needs root (to create its login user and run sshd): run as root")
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    home, created = _ensure_user(user, password)
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
    pw = pwd.getpwnam(user)
    for p in (ssh_dir, auth_keys):
        os.chown(p, pw.pw_uid, pw.pw_gid)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    port = free_port(preferred_port)
    conf = directory / "sshd_config"
    conf.write_text(_config(port, directory, host_key, user), encoding="utf-8")
    log = (directory / "sshd.log").open("wb")
    proc = subprocess.Popen([sshd, "-D", "-f", str(conf), "-e"], stdout=log, stderr=subprocess.STDOUT)  # noqa: S603  # nosec B603
    try:
        _wait_tcp_banner(port, proc, directory / "sshd.log")
        yield SshServer(
            port=port,
            user=user,
            password=password,
            host_key_pub=Path(f"{host_key}.pub"),
            client_key=client_key,
            client_key_encrypted=client_key_enc,
            client_key_passphrase=passphrase,
            directory=directory,
        )
    finally:
        stop(proc)
        log.close()
        if created:
            subprocess.run(["userdel", "-r", user], check=False, capture_output=True)  # noqa: S603 S607  # nosec B603 B607


@contextlib.contextmanager
def run_sshd_new_host_key(
    server: SshServer, directory: Path, extra_config: tuple[str, ...] = ()
) -> Iterator[SshServer]:
    """A second sshd for ``server``'s user and client keys, with a host key of its own, on another port.

    The user's password and keys are left alone (``run_sshd`` would set new ones under the running
    server). ``extra_config`` lines end its sshd_config (``ForceCommand ...`` plays a router's CLI).
    """
    sshd = find_binary("sshd", "openssh-server")
    directory.mkdir(parents=True, exist_ok=True)
    host_key = directory / "ssh_host_ed25519_key"
    _keygen(host_key, "ed25519")
    port = free_port(server.port + 1)
    conf = directory / "sshd_config"
    conf.write_text(
        _config(port, directory, host_key, server.user) + "".join(f"{line}\n" for line in extra_config),
        encoding="utf-8",
    )
    log = (directory / "sshd.log").open("wb")
    proc = subprocess.Popen([sshd, "-D", "-f", str(conf), "-e"], stdout=log, stderr=subprocess.STDOUT)  # noqa: S603  # nosec B603
    try:
        _wait_tcp_banner(port, proc, directory / "sshd.log")
        yield dataclasses.replace(
            server, port=port, host_key_pub=Path(f"{host_key}.pub"), directory=directory
        )
    finally:
        stop(proc)
        log.close()


def _wait_tcp_banner(port: int, proc: subprocess.Popen[bytes], logfile: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DaemonError(f"sshd exited at start: {logfile.read_text(errors='replace')[-500:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise DaemonError(f"sshd did not start listening within 10 s: see {logfile}")
