"""An HTTP CONNECT proxy on loopback (RFC 9110 9.3.6), as an operator's egress proxy would be.

Threads, 127.0.0.1 only, bounded: at most ``MAX_TUNNELS`` tunnels at once, a request head of at most
``MAX_HEAD`` bytes, a timeout on every socket, and tunnels only to loopback. Optional Basic auth (a
407 without it), optional TLS on the listening side (an ``https://`` proxy), and on demand a fixed
answer instead of a tunnel (``answer = 407`` or ``502``). It counts the tunnels it opened and keeps
the request heads it saw, so tests can check what the appliance sent.
"""

from __future__ import annotations

import base64
import contextlib
import select
import socket
import ssl
import threading
from dataclasses import dataclass, field

MAX_TUNNELS = 32
MAX_HEAD = 16 * 1024
IO_TIMEOUT_S = 30.0
_REASONS = {407: "Proxy Authentication Required", 502: "Bad Gateway", 403: "Forbidden"}


@dataclass
class _Seen:
    heads: list[bytes] = field(default_factory=list)
    tunnels: int = 0
    refused: int = 0


class ConnectProxy:
    def __init__(
        self,
        *,
        auth: tuple[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.answer: int | None = None  # a status to answer every CONNECT with instead of a tunnel
        self._auth = auth
        self._tls = tls
        self._seen = _Seen()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_TUNNELS)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._workers: list[threading.Thread] = []

    def url(self, userinfo: str = "") -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}"

    @property
    def tunnels(self) -> int:
        with self._lock:
            return self._seen.tunnels

    @property
    def refused(self) -> int:
        with self._lock:
            return self._seen.refused

    @property
    def heads(self) -> list[bytes]:
        with self._lock:
            return list(self._seen.heads)

    def __enter__(self) -> ConnectProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()
        for worker in self._workers:
            worker.join(5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                client.close()  # over the bound: refused, as a full proxy would
                continue
            worker = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._workers = [w for w in self._workers if w.is_alive()] + [worker]
            worker.start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            raw.settimeout(IO_TIMEOUT_S)
            client = self._tls.wrap_socket(raw, server_side=True) if self._tls else raw
            with client:
                self._handle(client)
        except (OSError, ValueError):
            pass  # a client that goes away or speaks nonsense ends only its own connection
        finally:
            raw.close()
            self._slots.release()

    def _handle(self, client: socket.socket) -> None:
        head = _read_head(client)
        with self._lock:
            self._seen.heads.append(head)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
        host, _, port = target.rpartition(":")
        if method != "CONNECT" or host not in ("127.0.0.1", "localhost"):
            return self._refuse(client, 403)
        if self.answer is not None:
            return self._refuse(client, self.answer)
        if self._auth is not None and headers.get("proxy-authorization") != _basic(*self._auth):
            return self._refuse(client, 407)
        with socket.create_connection(("127.0.0.1", int(port)), timeout=IO_TIMEOUT_S) as upstream:
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with self._lock:
                self._seen.tunnels += 1
            _relay(client, upstream, self._stop)

    def _refuse(self, client: socket.socket, status: int) -> None:
        with self._lock:
            self._seen.refused += 1
        extra = 'Proxy-Authenticate: Basic realm="test"\r\n' if status == 407 else ""
        client.sendall(
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Refused')}\r\n{extra}"
            "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _read_head(client: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(4096)
        if not chunk or len(data) + len(chunk) > MAX_HEAD:
            raise ValueError("no request head within the cap")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    if rest:
        raise ValueError("data before the tunnel was opened")
    return head


def _relay(a: socket.socket, b: socket.socket, stop: threading.Event) -> None:
    # A TLS client socket may hold decrypted bytes select() cannot see: read it until it is empty.
    peers = {a: b, b: a}
    while not stop.is_set():
        ready, _, _ = select.select(list(peers), [], [], 0.5)
        for src in ready:
            while True:
                try:
                    chunk = src.recv(65536)
                except (ssl.SSLWantReadError, BlockingIOError):
                    break
                if not chunk:
                    with contextlib.suppress(OSError):
                        peers[src].shutdown(socket.SHUT_WR)
                    return
                peers[src].sendall(chunk)
                if not (isinstance(src, ssl.SSLSocket) and src.pending()):
                    break
