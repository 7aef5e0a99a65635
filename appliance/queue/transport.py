"""The one HTTP client to the instance: mTLS context, no environment, no redirects, explicit proxy only."""

from __future__ import annotations

import httpx

from appliance import __version__
from appliance.config.model import InstanceSection
from appliance.limits import INSTANCE_CONNECTIONS, INSTANCE_DEADLINE_FACTOR, Limits
from appliance.probes._httppool import PinnedTransport
from appliance.probes._httptunnel import proxy_context, proxy_from_url
from appliance.queue.client import EccClient
from hardening.tls import client_context


def instance_client(
    instance: InstanceSection,
    limits: Limits,
    auth: httpx.Auth | None = None,
    *,
    name: str,
    key_password: bytes | None = None,
) -> httpx.AsyncClient:
    """An AsyncClient that talks only to the configured instance, the way the config says.

    ``name`` is the appliance name: the client certificate must be ``mid.server.<name>``'s.
    ``trust_env=False`` keeps HTTPS_PROXY, SSL_CERT_FILE, .netrc and friends out of the decision.
    The requests go over midbox's own h11 transport, with the same TLS context and the instance's
    name as the server name, directly or through the configured proxy's CONNECT tunnel; httpx's
    default transport (httpcore and AnyIO, not in the binary) is never built.
    """
    ctx = client_context(
        ca_file=instance.ca_file,
        client_cert=instance.client_cert,
        client_key=instance.client_key,
        use_system_trust=instance.use_system_trust,
        ca_sha256=instance.ca_file_sha256,
        name=name,
        key_password=key_password,
    )
    proxy = proxy_from_url(instance.proxy) if instance.proxy is not None else None
    transport = PinnedTransport(
        ctx,
        max_connections=INSTANCE_CONNECTIONS,
        idle_connections=INSTANCE_CONNECTIONS,
        proxy=proxy,
        proxy_ssl=proxy_context() if proxy is not None and proxy.scheme == "https" else None,
    )
    return httpx.AsyncClient(
        base_url=instance.url,
        transport=transport,
        trust_env=False,
        follow_redirects=False,
        auth=auth,
        timeout=httpx.Timeout(limits.instance_timeout_s),
        limits=httpx.Limits(
            max_connections=INSTANCE_CONNECTIONS, max_keepalive_connections=INSTANCE_CONNECTIONS
        ),
        headers={
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": f"midbox/{__version__}",
        },
    )


def ecc_client(http: httpx.AsyncClient, *, name: str, limits: Limits) -> EccClient:
    """The queue client over ``http``: the answer cap, and a deadline on every whole request (a server
    that sends one byte at a time is not ended by per-read timeouts)."""
    return EccClient(
        http,
        name=name,
        max_response_bytes=limits.instance_response_bytes,
        deadline_s=limits.instance_timeout_s * INSTANCE_DEADLINE_FACTOR,
    )
