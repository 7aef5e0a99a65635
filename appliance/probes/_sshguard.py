"""A socket wrapper that caps what an SSH server may send before authentication.

paramiko reads the server's banner lines 128 bytes at a time, joining them with ``buf +=`` until a
newline, and its timeout applies to each read, not to the line: a server that sends an endless banner
without a newline (or drips one byte a second) grows that buffer without bound, in quadratic time, for
as long as it likes. The guard counts the bytes paramiko receives: more than ``banner_bytes`` before
the ``SSH-`` version line, or more than ``preauth_bytes`` before authentication succeeded, and the
next read fails; ``tripped`` then says why, for the job's error result.

Every read also re-arms TCP_QUICKACK (Linux): sshd leaves Nagle on for sessions without a PTY, so
its second small packet in a row waits for our ACK, which the kernel would delay by 40 ms while the
client waits for an answer (measured: opening the first channel took 45 ms instead of 0.5 ms).
"""

from __future__ import annotations

import contextlib
import errno
import socket
from typing import Any

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only; the kernel resets it, so set per read


class PreAuthLimitError(OSError):
    """The server sent more than the caps allow before authentication."""


class PreAuthGuard:
    """Stands in for the socket paramiko is given; after ``authenticated()`` it only passes reads on."""

    def __init__(self, sock: socket.socket, banner_bytes: int, preauth_bytes: int, where: str) -> None:
        self._sock = sock
        self._banner_cap = banner_bytes
        self._preauth_cap = preauth_bytes
        self._where = where
        self._received = 0
        self._banner_done = False
        self._line_head = b""  # the first four bytes of the line being received, to spot "SSH-"
        self._open = True
        self.tripped: str | None = None

    def authenticated(self) -> None:
        self._open = False

    def recv(self, size: int) -> bytes:
        data = self._sock.recv(size)
        if data and _QUICKACK is not None:
            with contextlib.suppress(OSError):  # only a delay: the ACK still goes out, 40 ms later
                self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        if self._open and data:
            self._count(data)
        return data

    def _count(self, data: bytes) -> None:
        self._received += len(data)
        if not self._banner_done:
            self._scan_banner(data)
            if not self._banner_done and self._received > self._banner_cap:
                self._trip(
                    f"the SSH server at {self._where} sent more than {self._banner_cap} bytes without an "
                    "SSH version line (an endless banner); it is not an SSH server midbox can talk to"
                )
        if self._received > self._preauth_cap:
            self._trip(
                f"the SSH server at {self._where} sent more than {self._preauth_cap} bytes before "
                "authentication; check that the target is a real SSH server"
            )

    def _scan_banner(self, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            end = data.find(b"\n", pos)
            piece = data[pos : end if end >= 0 else len(data)]
            if len(self._line_head) < 4:
                self._line_head += piece[: 4 - len(self._line_head)]
            if end < 0:
                return
            if self._line_head == b"SSH-":
                self._banner_done = True
                return
            self._line_head = b""
            pos = end + 1

    def _trip(self, reason: str) -> None:
        self.tripped = reason
        self._open = False  # once: paramiko's own close must not trip again
        # (errno, text): paramiko's transport thread formats an OSError's args as exactly that pair.
        raise PreAuthLimitError(errno.EMSGSIZE, reason)

    def __getattr__(self, name: str) -> Any:
        # send, settimeout, close, _closed, fileno ...: the real socket's.
        return getattr(self._sock, name)
