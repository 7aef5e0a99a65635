"""One command over an open, verified SSH transport: stdin fed while output is read, both capped,
the exit status or the timeout; and the POSIX shell check, once per login when a memo is given.
"""

from __future__ import annotations

import select
import time
from dataclasses import dataclass

import paramiko

from appliance.errors import ProbeError
from appliance.probes._sshcommand import SHELL_CHECK, SHELL_CHECK_OK, Plan
from appliance.probes._sshshells import PosixShells

_READ_CHUNK = 32_768


@dataclass(frozen=True)
class CommandResult:
    command: str
    stdout: bytes
    stderr: bytes
    exit_status: int  # -1 when the output cap cut the command off before it exited
    stdout_truncated: bool
    stderr_truncated: bool


@dataclass(frozen=True)
class SessionLimits:
    connect_timeout_s: float
    command_timeout_s: float
    output_bytes: int


def check_shell_once(
    transport: paramiko.Transport,
    limits: SessionLimits,
    where: str,
    shells: PosixShells | None,
    login: tuple[str, int, str],
) -> None:
    """The shell check, unless this login passed it lately (or passes it in another session meanwhile)."""
    if shells is None:
        _check_shell(transport, limits, where)
        return
    if shells.ask(login, limits.command_timeout_s):
        return
    passed = False
    try:
        _check_shell(transport, limits, where)
        passed = True
    finally:
        shells.settle(login, passed)


def _check_shell(transport: paramiko.Transport, limits: SessionLimits, where: str) -> None:
    probe = Plan(SHELL_CHECK, SHELL_CHECK, "")
    result = run_command(transport, probe, None, limits, where)
    if SHELL_CHECK_OK.encode() not in result.stdout.splitlines():
        raise ProbeError(
            f"{where} did not answer as a POSIX shell (a network device, or a csh login shell?); "
            "a job for a device without one sets the parameter allow_unsupported_shells=true"
        )


def _stdin_for(plan: Plan, password: str | None, where: str) -> bytes:
    if not plan.password_first:
        return plan.stdin.encode()
    if password is None:
        raise ProbeError(f"sudo -S on {where} needs a password credential")  # build_plan prevents this
    if "\n" in password or "\r" in password:
        raise ProbeError(f"the password has a line break, so sudo -S on {where} cannot read it; use sudo -n")
    return password.encode() + b"\n" + plan.stdin.encode()


def run_command(
    transport: paramiko.Transport, plan: Plan, password: str | None, limits: SessionLimits, where: str
) -> CommandResult:
    deadline = time.monotonic() + limits.command_timeout_s
    stdin = _stdin_for(plan, password, where)
    sent = 0
    chan = transport.open_session(timeout=limits.command_timeout_s)
    try:
        # No PTY: stdout and stderr stay apart, no terminal side effects. Running the command is the
        # purpose of this probe; the signed policy decides where and with which credential.
        chan.exec_command(plan.exec_line)  # nosec B601
        if not stdin:
            chan.shutdown_write()  # EOF at once: a command that reads stdin must not wait for the timeout
        cap = limits.output_bytes
        out, err = bytearray(), bytearray()
        out_cut = err_cut = False
        command = plan.command
        while True:
            progressed = False
            if sent < len(stdin) and chan.send_ready():
                # Stdin goes out while output is read, so neither side can block the other on a full window.
                try:
                    sent += chan.send(stdin[sent : sent + _READ_CHUNK])
                except OSError:
                    sent = len(stdin)  # the command ended without reading all of it
                else:
                    if sent == len(stdin):
                        chan.shutdown_write()
                progressed = True
            if chan.recv_ready():
                data = chan.recv(_READ_CHUNK)
                progressed = True
                out_cut = _append(out, data, cap) or out_cut
            if chan.recv_stderr_ready():
                data = chan.recv_stderr(_READ_CHUNK)
                progressed = True
                err_cut = _append(err, data, cap) or err_cut
            if out_cut or err_cut:
                # Stop reading at the cap; closing the channel makes the remote side see a broken pipe.
                status = chan.recv_exit_status() if chan.exit_status_ready() else -1
                return CommandResult(command, bytes(out), bytes(err), status, out_cut, err_cut)
            if progressed:
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProbeError(f"command on {where} timed out after {limits.command_timeout_s:g} s")
            if chan.eof_received or chan.closed:
                # All output is in; the exit status follows (or the close does, for a killed command).
                if not chan.status_event.wait(remaining):
                    raise ProbeError(f"command on {where} timed out after {limits.command_timeout_s:g} s")
                if chan.recv_ready() or chan.recv_stderr_ready():
                    continue
                return CommandResult(command, bytes(out), bytes(err), chan.exit_status, False, False)
            if not transport.is_active():
                raise ProbeError(f"ssh connection to {where} closed while the command ran")
            select.select([chan], [], [], min(remaining, 0.05 if sent < len(stdin) else 1.0))
    finally:
        chan.close()


def _append(buf: bytearray, data: bytes, cap: int) -> bool:
    """Append up to ``cap`` bytes in total; True if anything had to be dropped."""
    room = cap - len(buf)
    if len(data) > room:
        buf.extend(data[: max(room, 0)])
        return True
    buf.extend(data)
    return False
