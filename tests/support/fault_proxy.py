"""A TCP proxy on loopback between the appliance and the development instance that misbehaves on demand.

TLS stays end to end (the proxy sees only ciphertext), so what it does is what a bad network does:
refuse, drop, delay, reset, truncate. Every loop is bounded; it listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass


@dataclass
class Mode:
    kind: str = "pass"  # pass | refuse | reset | delay | truncate | blackhole
    delay_s: float = 0.0
    truncate_after: int = 0


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.mode = Mode()
        self.connections = 0
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def set(self, kind: str, **kw: float) -> None:
        self.mode = Mode(kind, **kw)  # type: ignore[arg-type]

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            mode = self.mode
            if mode.kind == "refuse":
                client.close()
                continue
            if mode.kind == "reset":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                continue
            threading.Thread(target=self._serve, args=(client, mode), daemon=True).start()

    def _serve(self, client: socket.socket, mode: Mode) -> None:
        if mode.kind == "blackhole":
            self._stop.wait(30)
            client.close()
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.settimeout(60)
        budget = [mode.truncate_after if mode.kind == "truncate" else -1]
        t = threading.Thread(target=self._pipe, args=(client, upstream, mode, [-1]), daemon=True)
        t.start()
        self._pipe(upstream, client, mode, budget)
        t.join(5)

    def _pipe(self, src: socket.socket, dst: socket.socket, mode: Mode, budget: list[int]) -> None:
        try:
            while not self._stop.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if mode.kind == "delay":
                    time.sleep(mode.delay_s)
                if budget[0] >= 0:
                    data = data[: budget[0]]
                    budget[0] -= len(data)
                    if not data:
                        break
                dst.sendall(data)
                if budget[0] == 0:
                    break
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()
