"""The TLS client context for the instance connection: pinned CA, client certificate, TLS 1.2+."""

from __future__ import annotations

import ssl
from pathlib import Path

from hardening.errors import HardeningError
from hardening.filepins import read_pinned
from hardening.identity import IdentityError, check_certificate_file

# TLS 1.2 suites limited to forward-secret AEAD; TLS 1.3 suites are OpenSSL's defaults (all AEAD).
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


class TLSConfigError(HardeningError):
    """A certificate, key or CA file for the instance connection cannot be used."""


def client_context(
    *,
    ca_file: Path,
    client_cert: Path | None,
    client_key: Path | None,
    use_system_trust: bool = False,
    ca_sha256: str | None = None,
    name: str | None = None,
    key_password: bytes | None = None,
) -> ssl.SSLContext:
    """Build the one SSLContext the appliance uses to reach its instance.

    Trust is the pinned CA file only; the system store is added only when the signed config asks
    (``use_system_trust``). Nothing here reads the environment, so SSL_CERT_FILE and friends have no
    effect unless the system store was asked for. A pinned CA file is read once, checked against its
    pin and loaded from those bytes.

    A client certificate must name ``mid.server.<name>`` (``name`` is the config's appliance name);
    without ``name`` one is refused, so no caller can forget the check. ``key_password`` opens a key
    encrypted at rest (``hardening.keyatrest``); a plaintext key loads without it.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname=True, CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(_TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    try:
        if ca_sha256 is None:
            ctx.load_verify_locations(cafile=str(ca_file))
        else:
            pem = read_pinned(ca_file, ca_sha256, "instance.ca_file")
            ctx.load_verify_locations(cadata=pem.decode("ascii"))
    except (OSError, ssl.SSLError, ValueError) as e:
        raise TLSConfigError(
            f"cannot load the instance CA file {ca_file}: {_reason(e)}; "
            "check 'instance.ca_file' in the config"
        ) from e
    if use_system_trust:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if client_cert is not None:
        if name is None:
            raise TLSConfigError("internal: a client certificate is loaded only with the appliance name")
        try:
            check_certificate_file(client_cert, name)
        except IdentityError as e:
            raise TLSConfigError(str(e)) from e
        try:
            ctx.load_cert_chain(
                certfile=str(client_cert),
                keyfile=str(client_key) if client_key else None,
                password=key_password or _no_password,
            )
        except ssl.SSLError as e:
            raise TLSConfigError(
                f"the client key {client_key or client_cert} does not load with its certificate "
                f"{client_cert} ({_reason(e)}): a key for another certificate, or encrypted under "
                "another host's key; check 'instance.client_key', or enroll again"
            ) from e
        except OSError as e:
            from hardening.perms import unreadable_hint

            raise TLSConfigError(
                f"cannot read the client key {client_key or client_cert}: "
                f"{unreadable_hint(client_key or client_cert, e)}"
            ) from e
    return ctx


def _no_password() -> bytes:
    # Never prompt on a terminal: an encrypted key without the host key fails instead.
    raise TLSConfigError("the client key is encrypted and this host's key was not found")


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return type(e).__name__
