"""The development instance's HTTPS server: the Table API subset of ecc-protocol.md over mutual TLS."""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

from devinstance.claims import certificate_agents, claimed_agents, refusal
from devinstance.store import TABLES, QueryError, Store

log = logging.getLogger(__name__)

MAX_BODY = 25_000_000
PREFIX = "/api/now/table/"


@dataclass
class Fault:
    """A canned answer for the next ``count`` matching requests: a failure (tests of backoff and
    Retry-After), or, with ``answer``, exactly the bytes a hostile or broken instance would send."""

    status: int
    count: int
    retry_after: str | None = None
    match: bytes | None = None  # only requests whose body contains this
    path: str | None = None  # only requests whose URL-decoded path and query contain this
    answer: bytes | None = None  # the whole body to send (as application/json) instead of an error
    drip_s: float = 0.0  # send the answer one byte every drip_s seconds: a server that never quite ends
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers


def table_answer(rows: list[dict[str, Any]]) -> bytes:
    """A Table API query answer holding ``rows`` exactly as given (lone surrogates and all)."""
    return json.dumps({"result": rows}).encode()


@dataclass
class InstanceState:
    store: Store
    basic_users: dict[str, str] = field(default_factory=dict)  # user → password, for non-mTLS appliances
    faults: list[Fault] = field(default_factory=list)
    requests: int = 0
    on_request: Callable[[str, str], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Failover clusters of appliance names: work of a member silent for failover_after_s goes to another.
    clusters: list[tuple[str, ...]] = field(default_factory=list)
    failover_after_s: float = 30.0
    last_seen: dict[str, float] = field(default_factory=dict)
    failovers: int = 0
    # ecc_agent: True plays an instance whose business rule or ACL refuses a MID's writes (403).
    refuse_agent_writes: bool = False
    agent_writes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (method, body) seen

    def seen(self, name: str) -> None:
        # Certificates from `midbox enroll` carry CN mid.server.NAME; cluster members are bare names.
        with self.lock:
            self.last_seen[name.removeprefix("mid.server.")] = time.monotonic()

    def fail_over(self) -> int:
        """Move the open outputs of silent cluster members to the most recently seen live member."""
        moved = 0
        now = time.monotonic()
        with self.lock:
            seen = dict(self.last_seen)
        for cluster in self.clusters:
            live = sorted(
                (n for n in cluster if n in seen and now - seen[n] < self.failover_after_s),
                key=lambda n: -seen[n],
            )
            if not live:
                continue
            for name in cluster:
                if name in seen and now - seen[name] >= self.failover_after_s:
                    count = self.store.reassign(f"mid.server.{name}", f"mid.server.{live[0]}")
                    if count:
                        log.info("failover: %d output(s) of %s given to %s", count, name, live[0])
                        self.failovers += count
                        moved += count
        return moved

    def take_fault(self, body: bytes, path: str = "") -> Fault | None:
        with self.lock:
            self.requests += 1
            if not self.faults:
                return None
            fault = self.faults[0]
            if fault.match is not None and fault.match not in body:
                return None
            if fault.path is not None and fault.path not in unquote_plus(path):
                return None
            fault.count -= 1
            if fault.count <= 0:
                self.faults.pop(0)
            return fault


def server_context(ca: Path, cert: Path, key: Path, *, require_client_cert: bool = True) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    ctx.load_verify_locations(cafile=str(ca))
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], ctx: ssl.SSLContext, state: InstanceState) -> None:
        self.ssl_context = ctx
        self.state = state
        super().__init__(addr, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        # Headers and body go out in two writes; without NODELAY, Nagle and delayed ACKs add ~40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The handshake runs in the handler's thread, so a slow client cannot stall the accept loop.
        return self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(10)
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError) as e:
            log.info("TLS handshake from %s refused: %s", client_address[0], e)
            return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("error while serving %s", client_address[0], exc_info=True)


@dataclass(frozen=True)
class Request:
    """One HTTP request as the instance sees it, over real mTLS or an in-process transport."""

    method: str
    target: str  # path and query, as sent
    headers: Mapping[str, str]  # names lower-cased
    body: bytes
    peer_cert: Mapping[str, Any] | None  # ssl's getpeercert() dict of a verified client certificate
    declared_length: int = 0  # Content-Length; an oversize body is refused without being read


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    drip_s: float = 0.0  # send the body one byte every drip_s seconds
    close: bool = False


def handle(state: InstanceState, request: Request) -> Response:
    """The Table API subset of ecc-protocol.md: one request in, one answer out, no I/O but the store.

    The HTTPS server below runs it behind real mutual TLS; ``devinstance.transport`` runs it behind
    ``httpx.MockTransport``, so runner and outbox scenarios run in-process in milliseconds."""
    method = "PATCH" if request.method == "PUT" else request.method
    cert = request.peer_cert or {}
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                state.seen(str(value))
    if max(request.declared_length, len(request.body)) > MAX_BODY:
        return _error(413, "Request entity too large", f"body over {MAX_BODY} bytes", close=True)
    body = request.body
    fault = state.take_fault(body, request.target)
    if state.on_request:
        state.on_request(method, request.target)
    if fault is not None:
        return _fault(fault)
    if not _authenticated(state, request):
        return _error(401, "User Not Authenticated", "Required to provide Auth information")
    parts = urlsplit(request.target)
    if not parts.path.startswith(PREFIX):
        return _error(400, "Invalid URL", parts.path[:100])
    table, _, sys_id = parts.path[len(PREFIX) :].partition("/")
    if table not in TABLES:
        return _error(400, "Invalid table", table[:100])
    query = parse_qs(parts.query)
    why = _impersonation(state, request, table, sys_id, query)
    if why:
        return _error(403, "Operation Failed", why)
    try:
        if table == "ecc_agent" and method in ("POST", "PATCH"):
            values = _object(body)
            with state.lock:
                state.agent_writes.append((method, dict(values)))
            if state.refuse_agent_writes:
                return _error(
                    403,
                    "Operation Failed",
                    "Operation against file 'ecc_agent' was aborted by Business Rule 'MID Server "
                    "record protection'. Business Rule Stack:MID Server record protection",
                )
            values.pop("validated", None)  # only an admin validates (Store.validate_agent)
            body = json.dumps(values).encode()
        if method == "GET" and not sys_id:
            encoded = query.get("sysparm_query", [""])[0]
            limit = int(query.get("sysparm_limit", ["10000"])[0])
            fields = [f for f in query.get("sysparm_fields", [""])[0].split(",") if f]
            return _json(200, {"result": state.store.query(table, encoded, limit, fields)})
        if method == "POST" and not sys_id:
            return _json(201, {"result": state.store.insert(table, _object(body))})
        if method == "PATCH" and sys_id:
            updated = state.store.update(table, sys_id, _object(body))
            if updated is None:
                return _error(
                    404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
                )
            return _json(200, {"result": updated})
        return _error(405, "Method not allowed", method)
    except (QueryError, ValueError) as e:
        return _error(400, "Invalid request", str(e)[:200])


def _impersonation(
    state: InstanceState, request: Request, table: str, sys_id: str, query: dict[str, list[str]]
) -> str | None:
    """Why a certificate-authenticated request may not act for the MID it names, or None."""
    if not request.peer_cert:
        return None  # Basic auth: the user, not a certificate, is the identity
    stored = state.store.get(table, sys_id) if sys_id.isalnum() else None
    claimed = claimed_agents(table, query.get("sysparm_query", [""])[0], request.body, stored)
    return refusal(certificate_agents(request.peer_cert), claimed)


def _authenticated(state: InstanceState, request: Request) -> bool:
    if request.peer_cert:
        return True  # a certificate from our CA: the certificate-based auth of the instance
    header = request.headers.get("authorization", "")
    if not header.startswith("Basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    expected = state.basic_users.get(user)
    return expected is not None and hmac.compare_digest(expected.encode(), password.encode())


def _fault(fault: Fault) -> Response:
    if fault.answer is None:
        headers = dict(fault.headers)
        if fault.retry_after:
            headers["Retry-After"] = fault.retry_after
        body = {"error": {"message": "Injected fault", "detail": ""}, "status": "failure"}
        return _json(fault.status, body, headers)
    return Response(fault.status, fault.answer, dict(fault.headers), drip_s=fault.drip_s)


def _error(status: int, message: str, detail: str, *, close: bool = False) -> Response:
    body = {"error": {"message": message, "detail": detail}, "status": "failure"}
    return Response(status, json.dumps(body).encode(), close=close)


def _json(status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, json.dumps(body).encode(), dict(headers or {}))


class _Handler(BaseHTTPRequestHandler):
    """Reads one request off the TLS socket, hands it to ``handle``, writes the answer back."""

    server: _Server
    protocol_version = "HTTP/1.1"

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if 0 < length <= MAX_BODY else b""
        request = Request(
            method=method,
            target=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            peer_cert=self.request.getpeercert() or None,
            declared_length=length,
        )
        answer = handle(self.server.state, request)
        if answer.close:
            self.close_connection = True
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer.body)))
        for k, v in answer.headers.items():
            self.send_header(k, v)
        self.end_headers()
        if not answer.drip_s:
            self.wfile.write(answer.body)
            return
        for i in range(len(answer.body)):
            self.wfile.write(answer.body[i : i + 1])
            self.wfile.flush()
            time.sleep(answer.drip_s)


def _object(body: bytes) -> dict[str, Any]:
    value = json.loads(body or b"{}")
    if not isinstance(value, dict):
        raise ValueError("body must be a JSON object")
    return value


class DevInstance:
    """A running development instance; use as a context manager, or ``start()``/``stop()``."""

    def __init__(
        self, state: InstanceState, ctx: ssl.SSLContext, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.state = state
        self._server = _Server((host, port), ctx, state)
        self._thread = threading.Thread(target=self._server.serve_forever, name="dev-instance", daemon=True)
        self._stop = threading.Event()
        self._monitor = threading.Thread(target=self._watch, name="dev-instance-monitor", daemon=True)

    def _watch(self) -> None:
        # The instance's MID Server Monitor: silent cluster members lose their open work.
        while not self._stop.wait(0.2):
            if self.state.clusters:
                self.state.fail_over()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> DevInstance:
        self._thread.start()
        self._monitor.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._monitor.join(timeout=5)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> DevInstance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
