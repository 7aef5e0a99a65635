"""The SSH probe (topics SSHCommand and SSHCommandLong): run a command on an allowlisted, pinned host.

paramiko is blocking, so each connection runs in one thread of a bounded executor; the event loop
only waits, times out and aborts (by shutting the socket down). Connections per target are capped,
so a burst of jobs cannot trip the server's MaxStartups: a slot is held from the connect until the
login is accepted (the part MaxStartups counts), and the commands run after it is given back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from appliance.credtypes import PROBE_TYPES
from appliance.errors import ApplianceError, PayloadError, ProbeError, TargetDeniedError
from appliance.interfaces import Credential
from appliance.limits import SSH_SHELL_MEMO_ENTRIES, SSH_SHELL_MEMO_TTL_S, Limits
from appliance.payload import xml_text
from appliance.probes._sshcommand import build_plan, options_from
from appliance.probes._sshshells import PosixShells
from appliance.probes.base import Job, ProbeContext
from appliance.probes.credchoice import explicit_alias, with_credentials
from appliance.probes.targets import checked_target, is_literal
from hardening.known_hosts import HostKey, KnownHosts
from hardening.policy import AllowRule, IPAddress

if TYPE_CHECKING:
    from appliance.probes._sshexec import CommandResult
    from appliance.probes._sshsession import AuthMaterial

log = logging.getLogger(__name__)

KNOWN_HOSTS_FILE = "known_hosts"


class SshProbe:
    """One per event loop. ``max_connections`` bounds threads; ``per_target`` logins to one host:port."""

    topics = ("SSHCommand", "SSHCommandLong")

    def rerun_safe(self, params: Mapping[str, str]) -> bool:
        return False  # a command may act: running it twice could act twice

    def __init__(
        self,
        *,
        max_connections: int = 16,
        per_target: int = 4,
        connect_timeout_s: float = 10.0,
        shell_memo_s: float = SSH_SHELL_MEMO_TTL_S,
    ) -> None:
        if not 1 <= max_connections <= 256 or not 1 <= per_target <= max_connections:
            raise ValueError("max_connections must be 1..256 and per_target 1..max_connections")
        self._max_connections = max_connections
        self._per_target = per_target
        self._connect_timeout_s = connect_timeout_s
        self._executor: ThreadPoolExecutor | None = None
        self._target_slots: dict[tuple[str, int], _Slot] = {}
        self._pin_lock = threading.Lock()  # pin-on-first-use: one writer of known_hosts at a time
        # Logins whose shell check passed lately: their next sessions skip it (one exec less each).
        self._posix = PosixShells(shell_memo_s, SSH_SHELL_MEMO_ENTRIES, time.monotonic)

    @classmethod
    def from_limits(cls, limits: Limits) -> SshProbe:
        """The probe with the concurrency caps of ``limits`` (the dispatcher's constructor)."""
        return cls(max_connections=limits.ssh_connections, per_target=limits.ssh_per_target)

    @property
    def kind(self) -> str:
        return "ssh"

    async def run(self, job: Job, ctx: ProbeContext) -> ET.Element:
        results = await self.run_commands(job, ctx, [job.name])
        return command_result_element(results[0])

    async def run_commands(self, job: Job, ctx: ProbeContext, commands: Sequence[str]) -> list[CommandResult]:
        """Run ``commands`` (each built as the job's ``name`` would be) in order on one connection."""
        from appliance.probes._sshexec import SessionLimits
        from appliance.probes._sshsession import (
            Aborter,
            HostKeyPolicy,
            HostKeyRejectedError,
            SessionSpec,
            Target,
            run_session,
        )

        host = job.source.strip()
        if not host:
            raise PayloadError("SSH job needs a target host in 'source'")
        port = job.int_param("port", 22, 1, 65535)
        cap_ms = int(ctx.limits.ssh_command_timeout_s * 1000)
        timeout_ms = job.int_param("command_timeout_ms", cap_ms, 1, cap_ms)
        params = _params(job)
        opts = options_from(params)
        for command in commands:  # a malformed job fails before any target, credential or connection
            build_plan(command, params, opts, sudo_password=False)
        named = explicit_alias(job)
        hostname = None if is_literal(host) else host
        addresses, rule = await checked_target(ctx, probe="ssh", host=host, port=port, credential=named)
        if rule is None:  # checked_target returns the rule that allowed the address connected to
            raise TargetDeniedError(f"target {host} port {port}: no [[allow]] rule decided")
        if opts.must_sudo and not rule.sudo:
            number = _rule_number(ctx, rule)
            ctx.audit.record("ssh.sudo.refused", {"target": host, "port": port, "rule": number})
            raise TargetDeniedError(
                f"job asks for must_sudo=true but [[allow]] rule {number}, which allows {host} port {port}, "
                "does not permit sudo; add 'sudo = true' to that rule and sign the config again"
            )
        address = addresses[0]
        limits = SessionLimits(
            connect_timeout_s=min(self._connect_timeout_s, timeout_ms / 1000),
            command_timeout_s=timeout_ms / 1000,
            output_bytes=ctx.limits.ssh_output_bytes,
        )
        known = KnownHosts(ctx.state_dir / KNOWN_HOSTS_FILE)
        target = Target(host=host, address=address, port=port)
        loop = asyncio.get_running_loop()

        def pinned(key: HostKey) -> None:  # called in the session's thread
            fields = {
                "target": host,
                "address": str(address),
                "port": port,
                "keytype": key.keytype,
                "fingerprint": key.fingerprint(),
                "rule": _rule_number(ctx, rule),
            }
            # Trust on first use is the rule's choice, never silent: a warning and an audit entry each time.
            log.warning(
                "pinned the first host key of %s:%s (%s) under rule %s",
                host,
                port,
                fields["fingerprint"],
                fields["rule"],
            )
            loop.call_soon_threadsafe(ctx.audit.record, "ssh.hostkey.pinned", fields)

        hostkeys = HostKeyPolicy(rule.host_keys == "pin-on-first-use", self._pin_lock, pinned)
        # Overall deadline: connection set-up, the shell check and every command, under the probe's cap.
        budget = min(
            ctx.limits.probe_timeout_s,
            3 * limits.connect_timeout_s + (len(commands) + 1) * limits.command_timeout_s,
        )

        async def attempt(alias: str, credential: Credential) -> list[CommandResult]:
            # Built per credential: sudo -S takes the password of the very credential that logs in.
            sudo_password = credential.type == "ssh-password"
            plans = tuple(build_plan(c, params, opts, sudo_password=sudo_password) for c in commands)
            if any(len(p.stdin.encode()) > ctx.limits.ssh_stdin_bytes for p in plans):
                raise PayloadError(f"the script is larger than {ctx.limits.ssh_stdin_bytes} bytes")
            authenticated = asyncio.Event()

            def logged_in() -> None:  # called in the session's thread
                loop.call_soon_threadsafe(authenticated.set)

            spec = SessionSpec(
                plans=plans,
                shell_check=not opts.raw,
                posix_shells=self._posix,
                hostkeys=hostkeys,
                on_authenticated=logged_in,
            )
            aborter = Aborter()
            deadline = loop.time() + budget
            future: asyncio.Future[list[CommandResult]] | None = None
            try:
                # The per-target slot covers the start-up only (connect, key exchange, host key, login):
                # sshd's MaxStartups counts unauthenticated connections, and the commands that follow
                # are bounded by the probe's threads and the dispatcher's per-target lease.
                async with self._slot(address, port):
                    auth = _auth_material(credential, alias)
                    ctx.audit.record(
                        "probe.connect",
                        {
                            "probe": "ssh",
                            "target": host,
                            "address": str(address),
                            "port": port,
                            "credential": alias,
                            "commands": len(commands),
                        },
                    )
                    future = loop.run_in_executor(
                        self._pool(), run_session, target, auth, known, spec, limits, aborter
                    )
                    del auth
                    await asyncio.wait_for(_started(authenticated, future), budget)
                return await asyncio.wait_for(asyncio.shield(future), max(deadline - loop.time(), 0))
            except HostKeyRejectedError as e:
                ctx.audit.record(
                    "ssh.hostkey.rejected",
                    {
                        "target": host,
                        "address": str(address),
                        "port": port,
                        "verdict": e.verdict,
                        "keytype": e.keytype,
                        "fingerprint": e.fingerprint,
                    },
                )
                raise
            except TimeoutError as e:
                aborter.abort()
                if future is not None:
                    with contextlib.suppress(ApplianceError, OSError):
                        await future  # the thread ends promptly once its socket is shut down
                raise ProbeError(f"ssh job on {host}:{port} timed out after {budget:g} s") from e
            except asyncio.CancelledError:
                aborter.abort()
                raise

        return await with_credentials(
            ctx,
            job,
            probe="ssh",
            types=PROBE_TYPES["ssh"],
            target=host,
            address=address,
            port=port,
            hostname=hostname,
            attempt=attempt,
        )

    async def aclose(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self._max_connections, thread_name_prefix="midbox-ssh"
            )
        return self._executor

    @contextlib.asynccontextmanager
    async def _slot(self, address: IPAddress, port: int) -> AsyncIterator[None]:
        key = (str(address), port)
        slot = self._target_slots.get(key)
        if slot is None:
            slot = self._target_slots[key] = _Slot(asyncio.Semaphore(self._per_target))
        slot.users += 1
        try:
            async with slot.sem:
                yield
        finally:
            slot.users -= 1
            if slot.users == 0:
                del self._target_slots[key]


async def _started(authenticated: asyncio.Event, session: asyncio.Future[list[CommandResult]]) -> None:
    """Return once the session has logged in, or has ended (its outcome is awaited by the caller)."""
    waiter = asyncio.ensure_future(authenticated.wait())
    try:
        await asyncio.wait((waiter, session), return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


class _Slot:
    """A per-target semaphore and how many jobs hold or wait for it (so idle targets are forgotten)."""

    def __init__(self, sem: asyncio.Semaphore) -> None:
        self.sem = sem
        self.users = 0


def _params(job: Job) -> dict[str, str]:
    """The job's parameters by name; where a name repeats, the first wins (as ``Job.param``)."""
    params: dict[str, str] = {}
    for name, value in job.parameters:
        params.setdefault(name, value)
    return params


def _rule_number(ctx: ProbeContext, rule: AllowRule) -> int:
    """The 1-based number of ``rule`` in the signed config, as ``policy explain`` shows it."""
    return ctx.policy.rules.index(rule) + 1


def _auth_material(credential: Credential, alias: str) -> AuthMaterial:
    from appliance.probes._sshsession import AuthMaterial, load_private_key

    user = credential.user
    if not user:
        raise ProbeError(f"credential {alias!r} has no user name")
    if credential.type == "ssh-password":
        try:
            password = credential.secret(0).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProbeError(f"credential {alias!r}: the password is not UTF-8") from e
        return AuthMaterial(user=user, alias=alias, password=password)
    pem = credential.secret(0)
    try:
        passphrase: bytes | None = credential.secret(1) or None
    except LookupError:
        passphrase = None
    return AuthMaterial(user=user, alias=alias, pkey=load_private_key(pem, passphrase, alias))


def command_result_element(result: CommandResult) -> ET.Element:
    """``<result command=..><stdout/><stderr/><exit_status/></result>``, cut streams marked truncated."""
    el = ET.Element("result", {"command": xml_text(result.command)})
    if result.stdout_truncated or result.stderr_truncated:
        el.set("truncated", "true")
    out = ET.SubElement(el, "stdout")
    out.text = xml_text(result.stdout)
    if result.stdout_truncated:
        out.set("truncated", "true")
    err = ET.SubElement(el, "stderr")
    err.text = xml_text(result.stderr)
    if result.stderr_truncated:
        err.set("truncated", "true")
    ET.SubElement(el, "exit_status").text = str(result.exit_status)
    return el
