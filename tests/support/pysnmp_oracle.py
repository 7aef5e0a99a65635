"""pysnmp as the oracle the built-in SNMP codec is checked against (tests and the benchmark only).

The appliance speaks v1, v2c and v3 on its own codec and the binary carries no pysnmp. This is the
session the appliance used before (one SnmpEngine per opener, created on first use), moved here so
tests can run the same job through pysnmp and compare results:
``SnmpProbe(legacy=PysnmpOracle({"2c"}))`` sends v2c through pysnmp and everything else through the
codec. It keeps the old semantics exactly: values normalised to ``(type, value)`` as the codec
returns them; for SNMPv1 a noSuchName answer to GetNext ends a walk (pysnmp turns it into
endOfMibView per RFC 2576) and any other error status is a ProbeError naming it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from typing import Any

from appliance.errors import CredentialRejectedError, ProbeError
from appliance.interfaces import Credential
from appliance.mib.oids import Oid
from appliance.probes.snmp.ber import GET, GETBULK, GETNEXT, Value
from appliance.probes.snmp.session import Row, Session, community_of, usm_settings
from appliance.probes.snmp.v2c import NoResponseError
from hardening.policy import IPAddress

_NO_SUCH_NAME = 2

# pysnmp class name -> SMI type name in results (Integer is pysnmp's name for Integer32 on the wire).
_TYPE_NAMES = {
    "Integer": "Integer32",
    "Integer32": "Integer32",
    "OctetString": "OctetString",
    "ObjectIdentifier": "ObjectIdentifier",
    "ObjectName": "ObjectIdentifier",
    "IpAddress": "IpAddress",
    "Counter32": "Counter32",
    "Gauge32": "Gauge32",
    "Unsigned32": "Gauge32",
    "TimeTicks": "TimeTicks",
    "Counter64": "Counter64",
    "Opaque": "Opaque",
    "Bits": "OctetString",  # Bits travels as an OCTET STRING on the wire
    "Null": "Null",
    "NoSuchObject": "noSuchObject",
    "NoSuchInstance": "noSuchInstance",
    "EndOfMibView": "endOfMibView",
}
_EMPTY = frozenset({"noSuchObject", "noSuchInstance", "endOfMibView", "Null"})


def normalize(value: Any) -> Value:
    """A pysnmp value as ``(type, python value)``, the same shape the built-in codec returns."""
    smi = _TYPE_NAMES.get(type(value).__name__, type(value).__name__)
    if smi in _EMPTY:
        return smi, None
    if smi in ("OctetString", "Opaque", "IpAddress"):
        return smi, bytes(value.asOctets())
    if smi == "ObjectIdentifier":
        return smi, tuple(int(s) for s in value)
    return smi, int(value)


class PysnmpOracle:
    """A ``LegacyOpener`` (appliance.probes.snmp.opener) sending ``versions`` through pysnmp."""

    def __init__(self, versions: Iterable[str]) -> None:
        self.versions = frozenset(versions)
        self._engine: Any = None
        # pysnmp caches a community by its index and ignores a new secret under an old index, so the
        # index is derived from alias and secret under a key that lives only as long as this opener.
        self._index_key = secrets.token_bytes(32)

    async def open(
        self,
        credential: Credential,
        alias: str,
        version: str,
        address: IPAddress,
        port: int,
        *,
        timeout_s: float,
        retries: int,
        sem: asyncio.Semaphore,
        where: str,
        index: int,
    ) -> Session:
        auth = pysnmp_auth(credential, alias, version, self._index_key, index)
        from pysnmp.hlapi.v3arch.asyncio import SnmpEngine, Udp6TransportTarget, UdpTransportTarget

        if self._engine is None:
            self._engine = SnmpEngine()
        cls = Udp6TransportTarget if address.version == 6 else UdpTransportTarget
        target = await cls.create((str(address), port), timeout=timeout_s, retries=retries)
        # Cisco's v3 form of community indexing is the context "vlan-N".
        context = f"vlan-{index}" if version == "3" and index else ""
        return PysnmpSession(
            self._engine, auth, target, sem, where, timeout_s, retries, v1=version == "1", context=context
        )

    async def aclose(self) -> None:
        if self._engine is not None:
            self._engine.close_dispatcher()
            self._engine = None


class PysnmpSession(Session):
    def __init__(
        self,
        engine: Any,
        auth: Any,
        target: Any,
        sem: asyncio.Semaphore,
        where: str,
        timeout_s: float,
        retries: int,
        *,
        v1: bool = False,
        context: str = "",
    ) -> None:
        from pysnmp.hlapi.v3arch.asyncio import ContextData

        super().__init__(sem, where)
        self._engine = engine
        self._auth = auth
        self._target = target
        self._ctx = ContextData(contextName=context.encode()) if context else ContextData()
        self._wait_s = timeout_s * (retries + 1) + 1.0
        self._v1 = v1

    async def _request(self, pdu: int, oids: tuple[Oid, ...], max_repetitions: int) -> list[Row]:
        from pysnmp.hlapi.v3arch.asyncio import ObjectIdentity, ObjectType, bulk_cmd, get_cmd, next_cmd

        var_binds = [ObjectType(ObjectIdentity(o)) for o in oids]
        extra: tuple[int, ...] = (0, max_repetitions) if pdu == GETBULK else ()
        fn = {GET: get_cmd, GETNEXT: next_cmd, GETBULK: bulk_cmd}[pdu]
        async with self._sem:
            try:
                err_ind, err_status, err_index, out = await asyncio.wait_for(
                    fn(
                        self._engine, self._auth, self._target, self._ctx, *extra, *var_binds, lookupMib=False
                    ),
                    self._wait_s,
                )
            except TimeoutError as e:
                raise NoResponseError(f"no SNMP response from {self._where}") from e
        if err_ind:
            raise _indication_error(str(err_ind), self._where)
        self.answered += 1
        if self._v1 and pdu == GETNEXT and int(err_status) == _NO_SUCH_NAME:
            return []  # SNMPv1's end of the MIB view: a walk ends here
        self._check_status(int(err_status), int(err_index))
        return [(tuple(int(s) for s in name), normalize(value)) for name, value in out]


def _indication_error(text: str, where: str) -> ProbeError:
    """pysnmp's error indication as our error; an authentication failure is the credential's fault."""
    low = text.lower()
    if "timeout" in low or "no snmp response" in low:
        return NoResponseError(
            f"no SNMP response from {where} (agent down, filtered, or wrong community/user)"
        )
    if "digest" in low or "decryption" in low or "unknown user" in low or "username" in low:
        return CredentialRejectedError(f"SNMPv3 authentication with {where} failed: {text[:120]}")
    return ProbeError(f"SNMP error with {where}: {text[:160]}")


def pysnmp_auth(credential: Credential, alias: str, version: str, index_key: bytes, index: int = 0) -> Any:
    """pysnmp CommunityData (v1, v2c) or UsmUserData (v3, authPriv only) for ``credential``."""
    from pysnmp.hlapi.v3arch.asyncio import CommunityData, UsmUserData
    from pysnmp.hlapi.v3arch.asyncio import auth as a

    if version in ("1", "2c"):
        raw = community_of(credential, alias, index)
        try:
            community = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProbeError(f"credential {alias!r}: the community is not UTF-8") from e
        model = 0 if version == "1" else 1
        tag = hmac.new(index_key, f"{alias}\0{model}\0".encode() + raw, hashlib.sha256).hexdigest()[:24]
        return CommunityData(f"m{tag}", community, mpModel=model)
    user, auth_name, priv_name, auth_key, priv_key = usm_settings(credential, alias)
    auth_protocols = {
        "SHA": a.USM_AUTH_HMAC96_SHA,
        "SHA-224": a.USM_AUTH_HMAC128_SHA224,
        "SHA-256": a.USM_AUTH_HMAC192_SHA256,
        "SHA-384": a.USM_AUTH_HMAC256_SHA384,
        "SHA-512": a.USM_AUTH_HMAC384_SHA512,
    }
    # AES-192/256 with Blumenthal key extension, as net-snmp's "AES-192"/"AES-256".
    priv_protocols = {
        "AES": a.USM_PRIV_CFB128_AES,
        "AES-192": a.USM_PRIV_CFB192_AES_BLUMENTHAL,
        "AES-256": a.USM_PRIV_CFB256_AES_BLUMENTHAL,
    }
    return UsmUserData(
        user,
        authKey=auth_key,
        privKey=priv_key,
        authProtocol=auth_protocols[auth_name],
        privProtocol=priv_protocols[priv_name],
    )
