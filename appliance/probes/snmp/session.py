"""Request sessions to one agent over the built-in codec (v1, v2c or v3 channel), one walk for all.

Values come back as ``(type, value)`` (see ``ber.Value``) whichever version fetched them, so results
look the same for v1, v2c and v3. SNMPv1 reports what v2c marks per varbind as an error of the whole
PDU; ``ChannelSession`` maps it the way RFC 2576 section 4.1.2.2 does (and as pysnmp did when it
carried v1): noSuchName to a GetNext is the end of the MIB view, so a walk ends there without an
error; noSuchName to a Get, and every other error status, is an error naming the status and index.
"""

from __future__ import annotations

import asyncio

from appliance.credtypes import SNMP_AUTH_PROTOCOLS, SNMP_DEFAULT_AUTH, SNMP_DEFAULT_PRIV, SNMP_PRIV_PROTOCOLS
from appliance.errors import ProbeError
from appliance.interfaces import Credential
from appliance.mib.oids import Oid, format_oid
from appliance.mib.table import mib_oids
from appliance.probes.snmp.ber import GET, GETBULK, GETNEXT, Value
from appliance.probes.snmp.v2c import V2cChannel
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


class ChannelSession(Session):
    """A session on one channel of the built-in codec: v1 or v2c (``V2cChannel``), or v3 (``V3Channel``)."""

    def __init__(
        self, channel: V2cChannel, sem: asyncio.Semaphore, where: str, lanes: int = 1, *, v1: bool = False
    ) -> None:
        super().__init__(sem, where, lanes)
        self._channel = channel
        self._v1 = v1

    async def _request(self, pdu: int, oids: tuple[Oid, ...], max_repetitions: int) -> list[Row]:
        if self._v1 and pdu == GETBULK:
            raise ProbeError(f"SNMPv1 has no GetBulk (agent {self._where}): walk with GetNext")
        async with self._sem:
            response = await self._channel.request(pdu, oids, 0, max_repetitions)
        self.answered += 1
        if self._v1 and pdu == GETNEXT and response.error_status == _NO_SUCH_NAME:
            return []  # SNMPv1's end of the MIB view: a walk ends here
        self._check_status(response.error_status, response.error_index)
        return list(response.varbinds)

    async def close(self) -> None:
        self._channel.close()


def row_bytes(oid: Oid, value: Value) -> int:
    """A lower bound of what one varbind adds to the result (its value's octets, its OID's arcs)."""
    data = value[1]
    return len(oid) + (len(data) if isinstance(data, bytes | tuple) else 8)


def community_of(credential: Credential, alias: str, index: int = 0) -> bytes:
    """The community to send; Cisco-style community indexing appends ``@INDEX`` (a VLAN)."""
    if credential.type != "snmp-community":
        raise ProbeError(f"credential {alias!r} is a {credential.type}; SNMP v1/v2c needs an snmp-community")
    raw = credential.secret(0)
    if not raw:
        raise ProbeError(f"credential {alias!r} has an empty community")
    return raw + b"@" + str(index).encode() if index else raw


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
