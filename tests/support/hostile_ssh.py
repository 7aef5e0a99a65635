"""A TCP server on 127.0.0.1 that plays a hostile SSH server on cue (the hostile-target kit).

Modes, each for every connection:

- ``endless``: a banner line that never ends (no newline), as fast as the client reads
- ``lines``: banner lines forever, none of them the ``SSH-`` version line
- ``drip``: one banner byte every 50 ms, never a newline
- ``ignore``: a real version line, then SSH_MSG_IGNORE packets forever (before any key exchange)
- ``garbage``: a real version line, then a packet length of 2 GiB and random bytes

The server counts what it sent, so a test can show where the client stopped reading.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

MODES = ("endless", "lines", "drip", "ignore", "garbage")


def ignore_packet(size: int) -> bytes:
    """An unencrypted SSH_MSG_IGNORE (RFC 4253 6, 11.2) with ``size`` bytes of data."""
    payload = b"\x02" + struct.pack(">I", size) + b"i" * size
    padding = 8 - (len(payload) + 5) % 8
    padding += 8 if padding < 4 else 0
    return struct.pack(">IB", len(payload) + padding + 1, padding) + payload + b"\x00" * padding


class HostileSshServer:
    def __init__(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode
        self.sent = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(1.0)
        with contextlib.suppress(OSError), conn:
            if self.mode in ("ignore", "garbage"):
                self._send(conn, b"SSH-2.0-OpenSSH_9.6\r\n")
            if self.mode == "garbage":
                self._send(conn, struct.pack(">I", 0x7FFFFFF0) + os.urandom(4096))
            chunk = {
                "endless": b"x" * 4096,
                "lines": b"Welcome, but not to SSH\r\n" * 160,
                "drip": b"x",
                "ignore": ignore_packet(4000),
                "garbage": os.urandom(4096),
            }[self.mode]
            while not self._stop.is_set():
                self._send(conn, chunk)
                if self.mode == "drip":
                    time.sleep(0.05)

    def _send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        with self._lock:
            self.sent += len(data)


@contextmanager
def hostile_ssh_server(mode: str) -> Iterator[HostileSshServer]:
    server = HostileSshServer(mode)
    server.start()
    try:
        yield server
    finally:
        server.close()
