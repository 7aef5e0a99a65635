"""The blocking half of the SSH probe: one connection, pinned host key, several commands, one thread.

Everything here runs in one executor thread per connection; the async side only ever touches the
socket (``shutdown``) to abort, never the paramiko transport, so no two threads drive one transport.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

import paramiko

from appliance.errors import CredentialRejectedError, ProbeError, TargetUnreachableError
from appliance.limits import SSH_BANNER_BYTES, SSH_PREAUTH_BYTES
from appliance.probes._sshalgs import restrict
from appliance.probes._sshcommand import Plan
from appliance.probes._sshexec import CommandResult, SessionLimits, check_shell_once, run_command
from appliance.probes._sshguard import PreAuthGuard
from appliance.probes._sshshells import PosixShells
from hardening.known_hosts import HostKey, KnownHosts, KnownHostsError, Verdict
from hardening.policy import IPAddress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    host: str  # as the job named it; used for messages and host-key lookup
    address: IPAddress  # the policy-checked address we connect to
    port: int


@dataclass(frozen=True)
class AuthMaterial:
    """Credentials in the form paramiko needs, built at the moment of use and dropped after."""

    user: str
    alias: str
    password: str | None = None
    pkey: paramiko.PKey | None = None


@dataclass(frozen=True)
class HostKeyPolicy:
    """What the allowing rule says about a key nobody pinned: refuse it, or pin it (``pin_first``).

    ``lock`` serialises pinning across the probe's threads; ``on_pinned`` is told about each new pin.
    """

    pin_first: bool
    lock: threading.Lock
    on_pinned: Callable[[HostKey], None]


@dataclass(frozen=True)
class SessionSpec:
    """Everything one session needs besides the credential: the plans and how to treat the target."""

    plans: tuple[Plan, ...]
    shell_check: bool  # confirm a POSIX login shell before the first plan
    hostkeys: HostKeyPolicy
    posix_shells: PosixShells | None = None  # logins that passed the check lately (None: always check)
    # Told (in the session's thread) once the server accepted the login: from then on the connection
    # no longer counts against the server's MaxStartups, so the probe's per-target start-up slot is free.
    on_authenticated: Callable[[], None] = lambda: None


class HostKeyRejectedError(ProbeError):
    """The server's host key is not pinned, or differs from the pin."""

    def __init__(self, message: str, *, verdict: str, keytype: str, fingerprint: str) -> None:
        super().__init__(message)
        self.verdict = verdict
        self.keytype = keytype
        self.fingerprint = fingerprint


class Aborter:
    """Lets the async side stop a session from outside its thread by shutting down its socket."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._aborted = False

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self._aborted:
                _shutdown(sock)

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            if self._sock is not None:
                _shutdown(self._sock)

    @property
    def aborted(self) -> bool:
        return self._aborted


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def load_private_key(pem: bytes, passphrase: bytes | None, alias: str) -> paramiko.PKey:
    """A paramiko key from PEM/OpenSSH bytes; the error names the alias, never the key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    loaded: object
    try:
        try:
            loaded = serialization.load_ssh_private_key(pem, password=passphrase)
        except ValueError:
            loaded = serialization.load_pem_private_key(pem, password=passphrase)
    except (ValueError, TypeError) as e:
        raise ProbeError(f"credential {alias!r}: the private key cannot be read (wrong passphrase?)") from e
    cls: type[paramiko.PKey]
    if isinstance(loaded, rsa.RSAPrivateKey):
        cls = paramiko.RSAKey
    elif isinstance(loaded, ed25519.Ed25519PrivateKey):
        cls = paramiko.Ed25519Key
    elif isinstance(loaded, ec.EllipticCurvePrivateKey):
        cls = paramiko.ECDSAKey
    else:
        raise ProbeError(f"credential {alias!r}: unsupported private key type")
    try:
        return cls.from_private_key(io.StringIO(pem.decode("ascii")), password=passphrase)
    except (paramiko.SSHException, ValueError, UnicodeDecodeError) as e:
        raise ProbeError(f"credential {alias!r}: the private key cannot be read") from e


def run_session(
    target: Target,
    auth: AuthMaterial,
    known_hosts: KnownHosts,
    spec: SessionSpec,
    limits: SessionLimits,
    aborter: Aborter,
) -> list[CommandResult]:
    """Connect, verify the host key, authenticate, run the plans in order; raise ProbeError."""
    where = f"{target.host}:{target.port}"
    try:
        return _run(target, auth, known_hosts, spec, limits, aborter, where)
    except ProbeError:
        raise
    except KnownHostsError as e:
        raise ProbeError(f"known_hosts: {e}") from e
    except paramiko.AuthenticationException as e:
        raise CredentialRejectedError(
            f"authentication as {auth.user!r} on {where} failed (credential {auth.alias!r})"
        ) from e
    except paramiko.IncompatiblePeer as e:
        raise ProbeError(
            f"the SSH server at {where} offers no algorithm midbox allows ({_first_line(e)}); enable a "
            "current one on it, e.g. curve25519-sha256, aes128-gcm@openssh.com and an ed25519 host key"
        ) from e
    except (paramiko.SSHException, EOFError) as e:
        if aborter.aborted:
            raise ProbeError(f"ssh session to {where} was aborted") from e
        raise ProbeError(f"ssh protocol error with {where}: {_first_line(e)}") from e
    except TimeoutError as e:
        raise TargetUnreachableError(f"timed out talking to {where}") from e
    except OSError as e:
        if aborter.aborted:
            raise ProbeError(f"ssh session to {where} was aborted") from e
        raise TargetUnreachableError(
            f"cannot connect to {where} ({target.address}): {e.strerror or type(e).__name__}"
        ) from e


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


def _run(
    target: Target,
    auth: AuthMaterial,
    known_hosts: KnownHosts,
    spec: SessionSpec,
    limits: SessionLimits,
    aborter: Aborter,
    where: str,
) -> list[CommandResult]:
    names = [target.host, str(target.address)]
    pinned = known_hosts.keys_for(names, target.port)
    family = socket.AF_INET6 if target.address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    aborter.attach(sock)
    # paramiko sets no TCP_NODELAY; without it every exec round trip waits on Nagle + delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(limits.connect_timeout_s)
    transport: paramiko.Transport | None = None
    guard = PreAuthGuard(sock, SSH_BANNER_BYTES, SSH_PREAUTH_BYTES, where)
    try:
        sock.connect((str(target.address), target.port))
        sock.settimeout(None)
        transport = paramiko.Transport(guard)  # a socket in all paramiko uses
        transport.banner_timeout = limits.connect_timeout_s
        transport.handshake_timeout = limits.connect_timeout_s
        transport.auth_timeout = limits.connect_timeout_s
        restrict(transport, (key.keytype for key in pinned))
        transport.start_client(timeout=limits.connect_timeout_s)
        try:
            server_key = transport.get_remote_server_key()
        except paramiko.SSHException as e:  # start_client returns silently when its timeout passes
            raise ProbeError(
                f"the SSH server at {where} did not finish its banner and key exchange within "
                f"{limits.connect_timeout_s:g} s (timed out)"
            ) from e
        _verify_host_key(
            known_hosts,
            names,
            target,
            HostKey(server_key.get_name(), server_key.asbytes()),
            where,
            spec.hostkeys,
        )
        if auth.pkey is not None:
            transport.auth_publickey(auth.user, auth.pkey)
        elif auth.password is not None:
            transport.auth_password(auth.user, auth.password)
        else:
            raise ProbeError(f"credential {auth.alias!r} has neither a password nor a key")
        if not transport.is_authenticated():
            raise paramiko.AuthenticationException("not authenticated")
        guard.authenticated()
        spec.on_authenticated()
        if spec.shell_check:
            check_shell_once(
                transport, limits, where, spec.posix_shells, (str(target.address), target.port, auth.user)
            )
        return [run_command(transport, plan, auth.password, limits, where) for plan in spec.plans]
    except (paramiko.SSHException, EOFError, OSError) as e:
        # paramiko rewraps what the guard raised in its own thread; the guard still knows why.
        if guard.tripped:
            raise ProbeError(guard.tripped) from e
        raise
    finally:
        if transport is not None:
            transport.close()
        sock.close()


def _verify_host_key(
    known: KnownHosts, names: list[str], target: Target, offered: HostKey, where: str, policy: HostKeyPolicy
) -> None:
    verdict = known.check(names, target.port, offered)
    if verdict is Verdict.UNKNOWN and policy.pin_first:
        # Check again under the lock: a concurrent job to the same new target may have pinned it.
        with policy.lock:
            verdict = known.check(names, target.port, offered)
            if verdict is Verdict.UNKNOWN:
                known.pin(target.host, target.port, offered)
                policy.on_pinned(offered)
                return
    if verdict is Verdict.MATCH:
        return
    host = f"[{target.host}]" if ":" in target.host else target.host
    pin_name = host if target.port == 22 else f"{host}:{target.port}"
    seen = f"{offered.keytype} {offered.fingerprint()}"
    if verdict is Verdict.UNKNOWN:
        message = (
            f"host key of {where} ({seen}) is not pinned; "
            f"verify it out of band, then run 'midbox hosts pin {pin_name} PUBKEY_FILE'"
        )
    else:
        message = (
            f"HOST KEY CHANGED for {where}: offered {seen} does not match the pinned key; refusing to "
            "connect (possible man-in-the-middle). If the change is legitimate, "
            f"run 'midbox hosts pin --replace {pin_name} PUBKEY_FILE'"
        )
    raise HostKeyRejectedError(
        message, verdict=verdict.value, keytype=offered.keytype, fingerprint=offered.fingerprint()
    )
