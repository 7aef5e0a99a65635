"""A loopback HTTP target that records what each request sent."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.helpers import TargetHandler, _TargetServer


@dataclass
class Seen:
    """What one server received: connections accepted and (path, headers) of each request."""

    connections: int = 0
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _RecordingServer(_TargetServer):
    seen: Seen

    def get_request(self) -> tuple[socket.socket, object]:
        sock, addr = super().get_request()
        with self.seen.lock:
            self.seen.connections += 1
        return sock, addr


class _RecordingHandler(TargetHandler):
    server: _RecordingServer

    def do_GET(self) -> None:
        with self.server.seen.lock:
            self.server.seen.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        super().do_GET()


@dataclass(frozen=True)
class Target:
    port: int
    seen: Seen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def target() -> Iterator[Target]:
    server = _RecordingServer(("127.0.0.1", 0), _RecordingHandler)
    server.seen = Seen()
    server.daemon_threads = True
    # A short poll interval: shutdown() waits for it, and every test starts and stops servers.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield Target(server.server_address[1], server.seen)
    finally:
        server.shutdown()
        server.server_close()
