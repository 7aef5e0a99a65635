"""A UDP relay in front of snmpd that counts requests in flight."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator

from tests.daemons import SnmpServer


class CountingRelay:
    """A UDP relay on loopback in front of snmpd that records the most requests ever unanswered."""

    def __init__(self, upstream_port: int) -> None:
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.connect(("127.0.0.1", upstream_port))
        self.port = self.front.getsockname()[1]
        self.outstanding = 0
        self.most = 0
        self.requests = 0
        self._client: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.front, self.back], [], [], 0.05)
            for sock in ready:
                data, addr = sock.recvfrom(65535)
                if sock is self.front:
                    self._client = addr
                    self.outstanding += 1
                    self.requests += 1
                    self.most = max(self.most, self.outstanding)
                    self.back.send(data)
                elif self._client is not None:
                    self.outstanding = max(0, self.outstanding - 1)
                    self.front.sendto(data, self._client)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.front.close()
        self.back.close()


@contextlib.contextmanager
def relay(s: SnmpServer) -> Iterator[CountingRelay]:
    r = CountingRelay(s.port)
    try:
        yield r
    finally:
        r.close()
