"""RESTProbe / HTTPClient: one HTTP request to an allowlisted target, redirects re-checked hop by hop.

The probe resolves the target itself, checks every address against the policy, and sends the request
to the checked address (with the original Host header and TLS server name), so neither DNS nor a
redirect can take it anywhere the signed config does not allow.
"""

from __future__ import annotations

import base64
import json
import ssl

# ElementTree only builds XML here; untrusted XML is parsed with defusedxml.
import xml.etree.ElementTree as ET  # nosec B405
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from appliance.errors import PayloadError, ProbeError, TargetUnreachableError
from appliance.probes._httpbody import ACCEPT_ENCODING, BoundedBody
from appliance.probes._httppool import PinnedTransport
from appliance.probes.base import Job, ProbeContext, use_credential
from appliance.probes.targets import checked_target
from hardening.filepins import FilePinError, read_pinned
from hardening.scopes import Ask

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MAX_REDIRECTS = 5
CaFile = tuple[Path, str | None]  # a rule's tls_ca and its pinned SHA-256
MAX_TLS_CLIENTS = 64
# Headers the job may not set: they belong to the transport or to the credential store.
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "authorization"})
# What httpx's client adds to every request, so that targets see the same requests as before.
_DEFAULT_HEADERS = {
    "Accept": "*/*",
    "Accept-Encoding": ACCEPT_ENCODING,
    "Connection": "keep-alive",
    "User-Agent": f"python-httpx/{httpx.__version__}",
}
_TIMEOUT_PHASES = ("connect", "read", "write", "pool")
_BAD_LOCATION = "the target redirected to an invalid redirect Location ({reason}); fix the target or the url"


# Methods that only read: an interrupted job with one of these simply runs again after a crash.
READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class _Request:
    method: str
    url: httpx.URL
    headers: dict[str, str]
    body: bytes


class HttpProbe:
    kind = "http"
    topics = ("RESTProbe", "HTTPClient")

    def rerun_safe(self, params: Mapping[str, str]) -> bool:
        return params.get("http_method", "GET").upper() in READ_ONLY_METHODS

    def __init__(self) -> None:
        # Plain-HTTP requests share one pool. HTTPS requests get a pool per server name, because a
        # pooled connection is keyed by address: sharing it would reuse one host's verified TLS session
        # for another host on the same address.
        self._plain: PinnedTransport | None = None
        self._tls: dict[tuple[str, CaFile | None], PinnedTransport] = {}

    async def run(self, job: Job, ctx: ProbeContext) -> ET.Element:
        request = job.parsed if isinstance(job.parsed, _Request) else parse_request(job)
        credential = job.param("credential") or None
        timeout = job.int_param("timeout_ms", int(ctx.limits.http_timeout_s * 1000), 1, 600_000) / 1000
        auth_header: str | None = None
        origin = (request.url.scheme, request.url.host, request.url.port)
        for _hop in range(MAX_REDIRECTS + 1):
            url = request.url
            port = url.port or (443 if url.scheme == "https" else 80)
            # Each hop is judged by its own method and path against the rules' scopes.
            ask = http_ask(request.method, url)
            hop = ctx if ask == ctx.policy.ask else replace(ctx, policy=ctx.policy.scoped(ask))
            addresses, rule = await checked_target(
                hop, probe="http", host=url.host, port=port, credential=credential
            )
            if credential and auth_header is None and (url.scheme, url.host, url.port) == origin:
                # Looked up only once the policy allowed this credential against this target.
                auth_header = self._auth_header(credential, ctx, job)
            headers = dict(request.headers)
            # Credentials never follow a redirect to another origin.
            if auth_header and (url.scheme, url.host, url.port) == origin:
                headers["Authorization"] = auth_header
            # HTTPS is verified against the CA of the rule that allowed the address connected to.
            ca = (rule.tls_ca, rule.tls_ca_sha256) if rule and rule.tls_ca and url.scheme == "https" else None
            response, body, truncated = await self._send(request, addresses[0], headers, timeout, ctx, ca)
            location = response.headers.get("location")
            if response.is_redirect and location:
                try:
                    target = url.join(location)
                    _ = target.host  # decoded now (IDNA), so a bad name fails as a bad Location
                except (httpx.InvalidURL, UnicodeError, ValueError) as e:
                    raise ProbeError(_BAD_LOCATION.format(reason=type(e).__name__)) from e
                request = _follow(request, response.status_code, target)
                continue
            return _result(response, body, truncated)
        raise ProbeError(f"more than {MAX_REDIRECTS} redirects")

    def _auth_header(self, alias: str, ctx: ProbeContext, job: Job) -> str:
        cred = use_credential(ctx, job, alias, job.source[:255])
        if cred.type == "http-basic":
            token = base64.b64encode((cred.user or "").encode() + b":" + cred.secret(0)).decode()
            return f"Basic {token}"
        if cred.type == "http-bearer":
            return f"Bearer {cred.secret(0).decode()}"
        raise ProbeError(
            f"credential {alias!r} is of type {cred.type!r}; the HTTP probe needs http-basic or http-bearer"
        )

    async def _send(
        self,
        request: _Request,
        address: object,
        headers: dict[str, str],
        timeout: float,
        ctx: ProbeContext,
        ca: CaFile | None,
    ) -> tuple[httpx.Response, bytes, bool]:
        url = request.url
        # An IPv6 literal keeps its brackets in Host (RFC 9110 7.2), or "::1:8080" reads as an address.
        name = f"[{url.host}]" if ":" in url.host else url.host
        host_header = name if url.port is None else f"{name}:{url.port}"
        literal = f"[{address}]" if ":" in str(address) else str(address)
        target = url.copy_with(host=literal.strip("[]"))
        headers["Host"] = host_header
        extensions: dict[str, object] = {"timeout": dict.fromkeys(_TIMEOUT_PHASES, timeout)}
        if url.scheme == "https":
            extensions["sni_hostname"] = url.host
        transport = self._client(url.scheme, url.host, ca)
        limit = ctx.limits.http_response_bytes
        try:
            sent = httpx.Request(
                request.method,
                target,
                headers=_merged(headers),
                content=request.body or None,
                extensions=extensions,
            )
            response = await transport.handle_async_request(sent)
            try:
                # Raw bytes, decoded here with a bound on every inflate step (see _httpbody).
                body = BoundedBody(response.headers.get("content-encoding", ""), limit)
                async for chunk in response.stream:  # type: ignore[union-attr]
                    body.feed(chunk)
                    if body.truncated:
                        break
            finally:
                await response.aclose()
        except httpx.TimeoutException as e:
            raise TargetUnreachableError(f"HTTP request to {url.host} timed out after {timeout:g} s") from e
        except httpx.ConnectError as e:
            raise TargetUnreachableError(f"HTTP request to {url.host} failed: {_reason(e)}") from e
        except httpx.RemoteProtocolError as e:
            if "location header" in str(e).lower():
                raise ProbeError(_BAD_LOCATION.format(reason=_reason(e))) from e
            raise ProbeError(f"HTTP request to {url.host} failed: {_reason(e)}") from e
        except httpx.HTTPError as e:
            raise ProbeError(f"HTTP request to {url.host} failed: {_reason(e)}") from e
        except (httpx.InvalidURL, UnicodeError) as e:
            # Defensive: httpx raises these for a URL or header it cannot encode (run joins redirects).
            raise ProbeError(_BAD_LOCATION.format(reason=type(e).__name__)) from e
        except zlib.error as e:
            raise ProbeError(f"HTTP response from {url.host} has a corrupt compressed body ({e})") from e
        return response, body.body(), body.truncated

    def _client(self, scheme: str, host: str, ca: CaFile | None) -> PinnedTransport:
        # PinnedTransport connects to the URL's (policy-checked) address only, as httpx's own does, but
        # without httpcore's per-request pool scan (most of a small request's time at 50 in flight).
        # No httpx client around it: no cookie jar carries state from one job to the next.
        if scheme != "https":
            if self._plain is None:
                self._plain = PinnedTransport(None)
            return self._plain
        transport = self._tls.get((host, ca))
        if transport is None:
            if len(self._tls) >= MAX_TLS_CLIENTS:
                self._tls.pop(next(iter(self._tls))).close_idle()  # its requests in flight still finish
            transport = PinnedTransport(_target_context(ca))
            self._tls[(host, ca)] = transport
        return transport

    async def aclose(self) -> None:
        transports = [*self._tls.values(), *([self._plain] if self._plain else [])]
        for transport in transports:
            await transport.aclose()
        self._tls.clear()
        self._plain = None


def _merged(headers: dict[str, str]) -> httpx.Headers:
    """httpx's client defaults, overridden by name (in any case) by the job's and the probe's own."""
    merged = httpx.Headers(_DEFAULT_HEADERS)
    merged.update(headers)
    return merged


def _target_context(ca: CaFile | None) -> ssl.SSLContext:
    """Verification is never off: the rule's CA only, or else the system's trust store.

    A pinned CA is read once, checked against its pin, and loaded from the bytes that were checked.
    """
    try:
        if ca is None:
            ctx = ssl.create_default_context()
        elif ca[1] is None:
            ctx = ssl.create_default_context(cafile=str(ca[0]))
        else:
            pem = read_pinned(ca[0], ca[1], "the allow rule's tls_ca")
            ctx = ssl.create_default_context(cadata=pem.decode("ascii"))
    except FilePinError as e:
        raise ProbeError(str(e)) from e
    except (OSError, ssl.SSLError, ValueError) as e:
        raise ProbeError(f"the allow rule's tls_ca {ca[0] if ca else ''} cannot be loaded: {e}") from e
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def http_ask(method: str, url: httpx.URL) -> Ask:
    """What one request asks of a scoped rule: its method and its path as sent (query aside)."""
    return Ask(method=method.upper(), path=url.raw_path.decode("ascii", "replace").split("?", 1)[0] or "/")


def parse_request(job: Job) -> _Request:
    raw_url = job.param("url")
    if not raw_url:
        raise PayloadError("RESTProbe needs a 'url' parameter")
    try:
        url = httpx.URL(raw_url)
    except httpx.InvalidURL as e:
        raise PayloadError(f"'url' is not a valid URL: {e}") from e
    if url.scheme not in ("http", "https") or not url.host:
        raise PayloadError("'url' must be an http:// or https:// URL with a host")
    if url.userinfo:
        raise PayloadError("'url' must not carry user info; name a credential alias instead")
    method = (job.param("http_method") or "GET").upper()
    if method not in METHODS:
        raise PayloadError(f"'http_method' {method[:20]!r} is not one of {sorted(METHODS)}")
    headers: dict[str, str] = {}
    raw_headers = job.param("headers")
    if raw_headers:
        try:
            parsed = json.loads(raw_headers)
        except ValueError as e:
            raise PayloadError("'headers' must be a JSON object of strings") from e
        if not isinstance(parsed, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
        ):
            raise PayloadError("'headers' must be a JSON object of strings")
        for key, value in parsed.items():
            if key.lower() in _RESERVED_HEADERS:
                raise PayloadError(f"header {key[:40]!r} may not be set by a job")
            if not _printable_ascii(key) or not _printable_ascii(value, allow_space=True):
                raise PayloadError(
                    f"header {key[:40]!r}: names and values must be printable ASCII (no line breaks); "
                    "percent- or base64-encode other text"
                )
            headers[key] = value
    return _Request(method, url, headers, (job.param("body") or "").encode())


def _printable_ascii(text: str, *, allow_space: bool = False) -> bool:
    return all(0x21 <= ord(c) <= 0x7E or (allow_space and c in " \t") for c in text) and (
        allow_space or bool(text)
    )


def _follow(request: _Request, status: int, url: httpx.URL) -> _Request:
    if url.scheme not in ("http", "https"):
        raise ProbeError(f"redirect to a non-HTTP URL ({url.scheme}) refused")
    if status in (307, 308):
        return _Request(request.method, url, request.headers, request.body)
    method = "HEAD" if request.method == "HEAD" else "GET"
    return _Request(method, url, request.headers, b"")


def _result(response: httpx.Response, body: bytes, truncated: bool) -> ET.Element:
    result = ET.Element("result", status=str(response.status_code))
    if truncated:
        result.set("truncated", "true")
    headers = ET.SubElement(result, "headers")
    headers.text = json.dumps({k.lower(): v for k, v in response.headers.items()}, sort_keys=True)
    body_el = ET.SubElement(result, "body")
    try:
        text = body.decode("utf-8")
        # XML 1.0 cannot carry most control characters; such bodies go as base64.
        if any(ord(c) < 32 and c not in "\t\n\r" for c in text):
            raise UnicodeDecodeError("utf-8", body, 0, 1, "control character")
        body_el.set("encoding", "utf-8")
        body_el.text = text
    except UnicodeDecodeError:
        body_el.set("encoding", "base64")
        body_el.text = base64.b64encode(body).decode()
    return result


def _reason(e: httpx.HTTPError) -> str:
    text = str(e)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "the target's TLS certificate is not trusted"
    return f"{type(e).__name__}" + (f" ({text[:160]})" if text else "")
