"""Request sessions to one agent: pysnmp (v2c or v3) or the fast v2c channel, one walk for both.

Values come back normalised as ``(type, value)`` (see ``ber.Value``) whichever path fetched them,
so results look the same for v2c and v3.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any

from appliance.credtypes import SNMP_AUTH_PROTOCOLS, SNMP_DEFAULT_AUTH, SNMP_DEFAULT_PRIV, SNMP_PRIV_PROTOCOLS
from appliance.errors import CredentialRejectedError, ProbeError
from appliance.interfaces import Credential
from appliance.mib.oids import Oid, format_oid
from appliance.mib.table import mib_oids
from appliance.probes.snmp.ber import GET, GETBULK, GETNEXT, Value
from appliance.probes.snmp.v2c import NoResponseError, V2cChannel
from appliance.probes.snmp.values import normalize
from appliance.probes.snmp.walk import LaneWalk, Sink

# RFC 3416 error-status names for messages.
_ERROR_STATUS = {
    1: "tooBig",
    2: "noSuchName",
    3: "badValue",
    4: "readOnly",
    5: "genErr",
    6: "noAccess",
    7: "wrongType",
    8: "wrongLength",
    9: "wrongEncoding",
    10: "wrongValue",
    11: "noCreation",
    12: "inconsistentValue",
    13: "resourceUnavailable",
    14: "commitFailed",
    15: "undoFailed",
    16: "authorizationError",
    17: "notWritable",
    18: "inconsistentName",
}

Row = tuple[Oid, Value]
_NO_SUCH_NAME = 2


class Session:
    """get, getnext and walk on top of one ``_request``; every request waits for an agent slot."""

    def __init__(self, sem: asyncio.Semaphore, where: str, lanes: int = 1) -> None:
        self._sem = sem
        self._where = where
        self._lanes = lanes  # ranges of one walk fetched at once (each request still takes a slot of sem)
        self.answered = 0  # responses received: a timeout before the first one may be a wrong community

    async def get(self, oids: tuple[Oid, ...]) -> list[Row]:
        return await self._request(GET, oids, 0)

    async def getnext(self, oids: tuple[Oid, ...]) -> list[Row]:
        return await self._request(GETNEXT, oids, 0)

    async def walk(
        self,
        root: Oid,
        use_bulk: bool,
        repetitions: int,
        cap: int,
        byte_cap: int | None = None,
        sink: Sink | None = None,
    ) -> list[Row]:
        """Every varbind under ``root`` (GETBULK pages, or GETNEXT when bulk is off), at most ``cap``
        of them and, with ``byte_cap``, no further than the page that passes ``byte_cap`` value bytes.

        Counting varbinds alone let a hostile agent answer each request with one 60 KB value: the
        walk held 1,500 of them (900 MiB of RSS) before the result's byte cap was ever consulted.
        A bulk walk with more than one lane is walked in concurrent ranges (``walk``), joined
        in OID order; a walk the budget cuts short goes on sequentially from where they stopped.
        With ``sink``, the rows are also handed to it in order as they arrive (see ``LaneWalk``);
        once it returns False the walk ends there.
        """
        rows: list[Row] = []
        if self._lanes > 1 and use_bulk:
            # Only bulk walks: an agent walked with GETNEXT (ServiceNow's default, and what fragile
            # agents get) sees one request per varbind and no more, as before.

            async def fetch(after: Oid) -> list[Row]:
                return await self._request(GETBULK, (after,), repetitions)

            lanes = LaneWalk(
                fetch, root, self._lanes, cap, byte_cap, self._where, mib_oids(), row_bytes, sink
            )
            rows, complete = await lanes.run()
            if complete or len(rows) >= cap or lanes.refused:
                return rows[:cap]
        current = rows[-1][0] if rows else root
        held = sum(row_bytes(o, v) for o, v in rows)
        while len(rows) < cap and (byte_cap is None or held <= byte_cap):
            if use_bulk:
                page = await self._request(GETBULK, (current,), min(repetitions, max(cap - len(rows), 1)))
            else:
                page = await self._request(GETNEXT, (current,), 0)
            if not page:
                return rows
            fresh = len(rows)
            for oid, value in page:
                if value[0] == "endOfMibView" or oid[: len(root)] != root:
                    if sink is not None:
                        sink(rows[fresh:])
                    return rows
                if oid <= current:
                    raise ProbeError(
                        f"SNMP agent {self._where} returned a non-increasing OID {format_oid(oid)}"
                    )
                rows.append((oid, value))
                held += row_bytes(oid, value)
                current = oid
            if sink is not None and not sink(rows[fresh:]):
                return rows
        return rows

    async def close(self) -> None:
        return None

    async def _request(self, pdu: int, oids: tuple[Oid, ...], max_repetitions: int) -> list[Row]:
        raise NotImplementedError

    def _check_status(self, status: int, index: int) -> None:
        if status:
            name = _ERROR_STATUS.get(status, f"error {status}")
            raise ProbeError(f"SNMP agent {self._where} answered {name} (index {index})")


class FastV2cSession(Session):
    def __init__(self, channel: V2cChannel, sem: asyncio.Semaphore, where: str, lanes: int = 1) -> None:
        super().__init__(sem, where, lanes)
        self._channel = channel

    async def _request(self, pdu: int, oids: tuple[Oid, ...], max_repetitions: int) -> list[Row]:
        async with self._sem:
            response = await self._channel.request(pdu, oids, 0, max_repetitions)
        self.answered += 1
        self._check_status(response.error_status, response.error_index)
        return list(response.varbinds)

    async def close(self) -> None:
        self._channel.close()


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


def row_bytes(oid: Oid, value: Value) -> int:
    """A lower bound of what one varbind adds to the result (its value's octets, its OID's arcs)."""
    data = value[1]
    return len(oid) + (len(data) if isinstance(data, bytes | tuple) else 8)


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


def community_of(credential: Credential, alias: str, index: int = 0) -> bytes:
    """The community to send; Cisco-style community indexing appends ``@INDEX`` (a VLAN)."""
    if credential.type != "snmp-community":
        raise ProbeError(f"credential {alias!r} is a {credential.type}; SNMP v1/v2c needs an snmp-community")
    raw = credential.secret(0)
    if not raw:
        raise ProbeError(f"credential {alias!r} has an empty community")
    return raw + b"@" + str(index).encode() if index else raw


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
        # v1 and v2c are what the credential (or the job) asks for; v1 only where a rule allows it.
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


def usm_settings(credential: Credential, alias: str) -> tuple[str, str, str, str, str]:
    """(user, auth protocol, priv protocol, auth pass phrase, priv pass phrase) of an snmp-usm credential."""
    if credential.type != "snmp-usm":
        raise ProbeError(f"credential {alias!r} is a {credential.type}; SNMP v3 needs an snmp-usm")
    if not credential.user:
        raise ProbeError(f"credential {alias!r} has no USM user name")
    auth_name = credential.options.get("auth_protocol", SNMP_DEFAULT_AUTH).upper()
    priv_name = credential.options.get("priv_protocol", SNMP_DEFAULT_PRIV).upper()
    if auth_name not in SNMP_AUTH_PROTOCOLS:
        raise ProbeError(
            f"credential {alias!r}: auth_protocol must be one of {', '.join(SNMP_AUTH_PROTOCOLS)}"
        )
    if priv_name not in SNMP_PRIV_PROTOCOLS:
        raise ProbeError(
            f"credential {alias!r}: priv_protocol must be one of {', '.join(SNMP_PRIV_PROTOCOLS)}"
        )
    try:
        auth_key, priv_key = credential.secret(0).decode("utf-8"), credential.secret(1).decode("utf-8")
    except (LookupError, UnicodeDecodeError) as e:
        raise ProbeError(f"credential {alias!r} needs an auth and a priv pass phrase (UTF-8)") from e
    if len(auth_key) < 8 or len(priv_key) < 8:
        raise ProbeError(f"credential {alias!r}: USM pass phrases must be at least 8 characters")
    return credential.user, auth_name, priv_name, auth_key, priv_key
