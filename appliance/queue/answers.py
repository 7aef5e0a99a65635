"""What the instance answered, judged before anything reads it: size, status, nesting, JSON shape; and
why a request failed, in words that name the fix (a refused client certificate, an untrusted instance
certificate, an old TLS version), and how long a busy instance asked us to wait.
"""

from __future__ import annotations

import email.utils
import json
import re
import ssl
import time
from typing import Any

import httpx

from appliance.errors import InstanceAuthError, InstanceError
from appliance.limits import MAX_JSON_DEPTH, MAX_RETRY_AFTER_S


class InstanceBusyError(InstanceError):
    """429 or 503: the instance asked us to come back later."""

    def __init__(self, message: str, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class AnswerTooLargeError(InstanceError):
    """The instance's answer exceeded the cap: ask for fewer records (or fewer fields) next time."""


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > limit:
            raise AnswerTooLargeError(f"the instance sent more than {limit} bytes in one answer; refusing it")
        chunks.append(chunk)
    return b"".join(chunks)


def check_response(response: httpx.Response, data: bytes) -> dict[str, Any]:
    status = response.status_code
    if status in (401, 403):
        raise InstanceAuthError(
            f"the instance refused this appliance ({status}{_error_message(data)}); check that its client "
            "certificate maps to a user with the mid_server role"
        )
    if status in (429, 503):
        raise InstanceBusyError(
            f"the instance is busy ({status}); retrying later",
            parse_retry_after(response.headers.get("Retry-After")),
        )
    if status >= 300:
        raise InstanceError(f"the instance answered {status}{_error_message(data)}")
    if json_too_deep(data, MAX_JSON_DEPTH):
        raise InstanceError(f"the instance answered with JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise InstanceError("the instance answered with something that is not JSON") from e
    if not isinstance(body, dict):
        raise InstanceError("the instance answered with JSON that is not an object")
    return body


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_EMPTY_PAIR = re.compile(rb"\[\]|\{\}")


def json_too_deep(data: bytes, limit: int) -> bool:
    """True if ``data`` nests arrays and objects more than ``limit`` deep. Strings are dropped, then
    every other byte but brackets, then one innermost level per pass: C-speed, and no recursion."""
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKET)
    for _ in range(limit):
        if not brackets:
            return False
        brackets, count = _EMPTY_PAIR.subn(b"", brackets)
        if not count:
            return False  # unbalanced: json.loads says what is wrong
    return bool(brackets)


def result_list(body: dict[str, Any]) -> list[Any]:
    result = body.get("result")
    if not isinstance(result, list):
        raise InstanceError("the instance answered a query without a 'result' list")
    return result


def _error_message(data: bytes) -> str:
    try:
        err = json.loads(data).get("error", {})
        message = str(err.get("message", ""))[:200]
    except (ValueError, AttributeError, UnicodeDecodeError):
        return ""
    return f": {message}" if message else ""


def ssl_reason(e: OSError) -> str:
    text = str(e)
    if "CERTIFICATE_REQUIRED" in text or "certificate required" in text:
        return "it requires a client certificate; check 'instance.client_cert' or run 'midbox enroll'"
    if "UNKNOWN_CA" in text or "BAD_CERTIFICATE" in text:
        return "it does not accept this appliance's client certificate; re-run 'midbox enroll'"
    return f"{type(e).__name__} ({text[:160]})"


_REFUSED_CERT = re.compile(r"CERTIFICATE_REQUIRED|certificate required|UNKNOWN_CA|BAD_CERTIFICATE")


def transport_reason(e: httpx.TransportError) -> str:
    if isinstance(e, httpx.ProxyError):  # the proxy's own answer or certificate, not the instance's
        return (
            f"instance.proxy: {str(e)[:300]}; check instance.proxy and that the proxy allows "
            "CONNECT to the instance"
        )
    cause: BaseException | None = e
    while cause is not None:
        if "CERTIFICATE_VERIFY_FAILED" in str(cause) or "certificate verify failed" in str(cause):
            return "its certificate is not trusted (not signed by the pinned CA, or wrong host name)"
        if isinstance(cause, ssl.SSLError) and _REFUSED_CERT.search(str(cause)):
            # The instance refused our client certificate (TLS 1.3 says so on the first read).
            return f"it closed the TLS connection: {ssl_reason(cause)}"
        if isinstance(cause, (BrokenPipeError, ConnectionResetError)):
            # asyncio may report the peer's close before the TLS alert that said why.
            return (
                f"it closed the connection ({type(cause).__name__}); if this repeats, check that it "
                "accepts this appliance's client certificate (run 'midbox doctor')"
            )
        if (
            "WRONG_VERSION" in str(cause)
            or "PROTOCOL_VERSION" in str(cause)
            or "UNSUPPORTED_PROTOCOL" in str(cause)
        ):
            return "it does not offer TLS 1.2 or newer"
        cause = cause.__cause__ or cause.__context__
    return type(e).__name__ + (f" ({str(e)[:200]})" if str(e) else "")


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()[:100]
    if value.isdigit():
        return min(float(value[:12]), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return min(max(0.0, when.timestamp() - time.time()), MAX_RETRY_AFTER_S)
