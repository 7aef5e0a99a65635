"""Why the instance could not be reached, in the operator's terms: DNS, refused, timeout, proxy, TLS
or a CA that does not match, each with its likely fix (httpx's exception text names none)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from appliance.config.model import InstanceSection
from appliance.probes._httptunnel import proxy_from_url

PEER_CERT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Diagnosis:
    detail: str
    unreachable: bool  # exit 3 (the network); False is exit 1 (this host's setup)


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def diagnose(error: Exception, instance: InstanceSection, timeout_s: float) -> Diagnosis:
    import httpx

    parts = urlsplit(instance.url)
    host, port = parts.hostname or "?", parts.port or 443
    where = f"{host}:{port}"
    causes = list(_causes(error))
    # The proxy's own failures (its answer, its certificate) are ProxyErrors; a ConnectError through
    # a proxy without a TLS cause is the proxy not reached.
    via_proxy = isinstance(error, httpx.ProxyError) or (
        instance.proxy
        and isinstance(error, httpx.ConnectError)
        and not any(isinstance(c, ssl.SSLError) for c in causes)
    )
    if via_proxy and instance.proxy:
        return Diagnosis(
            f"the proxy {_shown(instance.proxy)} failed to connect to {where} ({str(error)[:200]}); "
            "check instance.proxy and that the proxy allows CONNECT to the instance",
            True,
        )
    for c in causes:
        if isinstance(c, ssl.SSLCertVerificationError):
            issuer = presented_issuer(host, port) if not instance.proxy else None
            shown = f"issued by {issuer}" if issuer else "its certificate"
            return Diagnosis(
                f"{where} presented a certificate ({shown}) that does not verify against "
                f"instance.ca_file {instance.ca_file}: put the CA that issued it in that file and sign "
                "the config again",
                False,
            )
        if isinstance(c, socket.gaierror):
            return Diagnosis(
                f"cannot resolve {host!r}: check instance.url's host name and this host's DNS "
                "(or set instance.proxy where only a proxy resolves outside names)",
                True,
            )
        if isinstance(c, ConnectionRefusedError):
            return Diagnosis(f"{where} refused the connection: check instance.url's port and firewalls", True)
        if isinstance(c, ssl.SSLError):
            reason = getattr(c, "reason", None) or type(c).__name__
            return Diagnosis(
                f"the TLS handshake with {where} failed ({reason}): check "
                "instance.client_cert/client_key and that the instance accepts this certificate",
                False,
            )
    if isinstance(error, httpx.TimeoutException):
        return Diagnosis(
            f"{where} did not answer within {timeout_s:.0f} s: check egress firewalls to it, or set "
            "instance.proxy if this host must go through one",
            True,
        )
    return Diagnosis(f"{instance.url} could not be reached: {type(error).__name__}: {str(error)[:200]}", True)


def _shown(proxy: str) -> str:
    """The proxy URL without its user info: the password must not reach the doctor's output."""
    return proxy_from_url(proxy).shown


def presented_issuer(host: str, port: int) -> str | None:
    """The issuer of the certificate the server presents, read without trusting it (it is only shown)."""
    from cryptography import x509

    try:
        pem = ssl.get_server_certificate((host, port), timeout=PEER_CERT_TIMEOUT_S)
        cert = x509.load_pem_x509_certificate(pem.encode())
    except (OSError, ValueError):
        return None
    return cert.issuer.rfc4514_string()[:200]
