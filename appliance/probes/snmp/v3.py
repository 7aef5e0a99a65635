"""SNMPv3 authPriv requests to one agent over one connected UDP socket (the v2c channel's socket part).

Engine discovery and time synchronisation follow RFC 3414 §4 and §3.2: a noAuthNoPriv probe learns the
engine ID (its boots and time are only a first guess, since that report is not authenticated); the
first authPriv request then either succeeds or draws an authenticated notInTimeWindow report whose
boots and time we take. After that, only authentic messages move our idea of the engine's clock, and
a message outside the 150 s window is dropped. Reports that mean the credential is wrong end the
exchange at once with a message naming the fix.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable

from appliance.errors import CredentialRejectedError, ProbeError
from appliance.probes.snmp.ber import GET, REPORT, BerError, Oid, Response, encode_pdu
from appliance.probes.snmp.usm import (
    MAX_ENGINE_TIME,
    TIME_WINDOW_S,
    Engine,
    UsmKeys,
    V3Message,
    decode_message,
    encode_discovery,
    encode_message,
    peek_msg_id,
)
from appliance.probes.snmp.v2c import NoResponseError, V2cChannel
from hardening.policy import IPAddress

KeyMaker = Callable[[bytes], UsmKeys]  # engine ID -> the user's keys localised to it (cached by the caller)

MAX_ENGINES = 65_536

_REJECTED = {
    "unknownUserNames": "the agent does not know the user",
    "wrongDigests": "the auth pass phrase or auth protocol is wrong",
    "decryptionErrors": "the priv pass phrase or priv protocol is wrong",
    "unsupportedSecLevels": "the user is not set up for authPriv on the agent",
}


class EngineBook:
    """Engines that answered authentically, per agent address, for the opener's lifetime: a later job
    to the same agent skips discovery (one round trip instead of two). Bounded; starts over when full."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int], tuple[Engine, float]] = {}

    def get(self, remote: tuple[str, int]) -> tuple[Engine, float] | None:
        return self._known.get(remote)

    def put(self, remote: tuple[str, int], engine: Engine, synced_at: float) -> None:
        if remote not in self._known and len(self._known) >= MAX_ENGINES:
            self._known.clear()
        self._known[remote] = (engine, synced_at)

    def forget(self, remote: tuple[str, int]) -> None:
        self._known.pop(remote, None)


class V3Channel(V2cChannel):
    """authPriv GET/GETNEXT/GETBULK; ``open`` first, ``close`` always."""

    def __init__(
        self,
        address: IPAddress,
        port: int,
        keys_for: KeyMaker,
        context: bytes,
        timeout_s: float,
        retries: int,
        where: str,
        book: EngineBook | None = None,
    ) -> None:
        super().__init__(address, port, b"", timeout_s, retries, where)
        self._book = book if book is not None else EngineBook()
        self._from_book = False  # the engine came from an earlier job, not from discovery now
        self._keys_for = keys_for
        self._context = context
        self._keys: UsmKeys | None = None
        self._engine: Engine | None = None
        self._synced_at = 0.0  # monotonic time at which _engine.time was the engine's time
        self._authentic = False  # an authentic message came back: the keys are right
        self._discovery = asyncio.Lock()

    def _key(self, data: bytes) -> int:
        return peek_msg_id(data)

    async def request(
        self, pdu: int, oids: tuple[Oid, ...], non_repeaters: int = 0, max_repetitions: int = 0
    ) -> Response:
        async with self._discovery:  # concurrent lanes discover the engine once
            if self._engine is None or self._keys is None:
                await self._learn_engine()
        try:
            return await self._request_synced(pdu, oids, non_repeaters, max_repetitions)
        except ProbeError:
            if not self._from_book or self._authentic:
                raise
            # The engine came from an earlier job: the agent may have a new engine ID (reinstalled),
            # or this credential's keys do not fit. Discover afresh and try once more.
            self._book.forget(self._remote)
            async with self._discovery:
                await self._discover()
            return await self._request_synced(pdu, oids, non_repeaters, max_repetitions)

    async def _learn_engine(self) -> None:
        known = self._book.get(self._remote)
        if known is None:
            await self._discover()
            return
        self._engine, self._synced_at = known
        self._keys = self._keys_for(known[0].engine_id)
        self._from_book = True

    async def _request_synced(
        self, pdu: int, oids: tuple[Oid, ...], non_repeaters: int, max_repetitions: int
    ) -> Response:
        for _ in range(2):  # a second try only after an authentic notInTimeWindow report
            try:
                message = await self._exchange_once(pdu, oids, non_repeaters, max_repetitions)
            except NoResponseError as e:
                if self._authentic or self._from_book:
                    raise
                # The agent answered discovery, then dropped every authPriv request: net-snmp drops
                # what it cannot decrypt without a report.
                raise CredentialRejectedError(
                    f"SNMPv3 authentication with {self._where} failed: the agent answered discovery but "
                    "not the encrypted request, so the priv pass phrase or priv protocol is likely wrong; "
                    "fix the snmp-usm credential or the agent's user"
                ) from e
            self._authentic = True
            report = message.report()
            if report is None:
                assert self._engine is not None
                self._book.put(self._remote, self._engine, self._synced_at)
                return Response(
                    message.request_id, b"", message.error_status, message.error_index, message.varbinds
                )
            if report != "notInTimeWindows" or not message.flags & 1:
                raise self._report_error(report)
            self._engine, self._synced_at = message.engine, time.monotonic()
        raise ProbeError(
            f"SNMPv3 agent {self._where} keeps reporting notInTimeWindows: check the agent's "
            "snmpEngineBoots/Time (a clock reset without a boots increase)"
        )

    async def _discover(self) -> None:
        msg_id = _random_id()
        pdu = encode_pdu(GET, _random_id(), ())

        def accept(data: bytes) -> V3Message | None:
            try:
                message = decode_message(data, None)
            except BerError:
                return None
            if (
                message.msg_id != msg_id
                or message.pdu_tag != REPORT
                or not len(message.engine.engine_id) >= 5
            ):
                return None
            return message

        found = await self.exchange(lambda: (msg_id, encode_discovery(msg_id, pdu)), accept)
        self._engine, self._synced_at = found.engine, time.monotonic()
        self._keys = self._keys_for(found.engine.engine_id)
        self._from_book = False

    async def _exchange_once(
        self, pdu: int, oids: tuple[Oid, ...], non_repeaters: int, max_repetitions: int
    ) -> V3Message:
        keys, engine = self._keys, self._engine
        assert keys is not None and engine is not None
        request_id = _random_id()
        body = encode_pdu(pdu, request_id, oids, non_repeaters, max_repetitions)
        sent: set[int] = set()

        def build() -> tuple[int, bytes]:
            msg_id = _random_id()  # a retransmission is a new message (RFC 3412 §6.2)
            sent.add(msg_id)
            now = self._engine_now()
            return msg_id, encode_message(msg_id, keys, now, body, self._context, secrets.token_bytes(8))

        def accept(data: bytes) -> V3Message | None:
            try:
                message = decode_message(data, keys)
            except BerError:
                return None  # forged, corrupt or someone else's: keep waiting
            if message.msg_id not in sent:
                return None
            if not message.flags & 1:
                report = message.report()
                # An unauthenticated report is believed only as far as ending the wait: it cannot
                # change our keys or clock, and a wrong-credential report is what a bad key draws.
                if report in _REJECTED or report == "unknownEngineIDs":
                    raise self._report_error(report or "report")
                return None
            if message.engine.engine_id != engine.engine_id:
                return None
            if message.report() != "notInTimeWindows" and not self._in_window(message.engine):
                return None
            self._advance(message.engine)
            return message

        return await self.exchange(build, accept)

    def _engine_now(self) -> Engine:
        assert self._engine is not None
        elapsed = int(time.monotonic() - self._synced_at)
        return Engine(
            self._engine.engine_id, self._engine.boots, min(self._engine.time + elapsed, MAX_ENGINE_TIME)
        )

    def _in_window(self, seen: Engine) -> bool:
        """RFC 3414 §3.2 step 7b, the non-authoritative side."""
        ours = self._engine_now()
        if seen.boots == MAX_ENGINE_TIME or seen.boots < ours.boots:
            return False
        return not (seen.boots == ours.boots and seen.time < ours.time - TIME_WINDOW_S)

    def _advance(self, seen: Engine) -> None:
        ours = self._engine_now()
        if seen.boots > ours.boots or (seen.boots == ours.boots and seen.time > ours.time):
            self._engine, self._synced_at = seen, time.monotonic()

    def _report_error(self, report: str) -> ProbeError:
        reason = _REJECTED.get(report)
        if reason is not None:
            return CredentialRejectedError(
                f"SNMPv3 authentication with {self._where} failed: {reason} ({report}); "
                "fix the snmp-usm credential or the agent's user"
            )
        if report == "unknownEngineIDs":
            return ProbeError(
                f"SNMPv3 agent {self._where} does not accept its own engine ID (unknownEngineIDs); "
                "check that only one agent answers on this address and port"
            )
        return ProbeError(f"SNMPv3 agent {self._where} sent an unexpected report ({report})")


def _random_id() -> int:
    return secrets.randbelow(2**31 - 2) + 1
