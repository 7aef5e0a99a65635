"""The built-in SNMPv3 USM layer: RFC 3414 key vectors, a strict decoder no corruption gets through,
and the same answers as pysnmp and net-snmp from the real snmpd's v3 users."""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.errors import ProbeError
from appliance.probes.snmp.ber import GET, RESPONSE, BerError, encode_pdu
from appliance.probes.snmp.keys import UsmKeyCache
from appliance.probes.snmp.probe import SnmpProbe
from appliance.probes.snmp.usm import (
    Engine,
    UsmKeys,
    decode_message,
    encode_message,
    localize,
    passphrase_key,
    priv_key,
)
from appliance.probes.snmp.v3 import V3Channel
from hardening.policy import Policy
from tests.daemons import SnmpServer
from tests.probes.conftest import MemCredential, MemCredentials, loopback_rule, make_ctx
from tests.support.pysnmp_oracle import PysnmpOracle
from tests.support.snmp import ctx_for, job, run, varbinds
from tests.support.snmp_relay import relay

ENGINE = bytes.fromhex("000000000000000000000002")


def test_rfc3414_a3_key_localisation_vectors() -> None:
    # RFC 3414 A.3.2: "maplesyrup", SHA-1, engine ID 00..02.
    ku = passphrase_key(b"maplesyrup", "SHA")
    assert ku.hex() == "9fb5cc0381497b3793528939ff788d5d79145211"
    assert localize(ku, ENGINE, "SHA").hex() == "6695febc9288e36282235fc7151f128497b38f3f"


def test_blumenthal_extension_appends_the_hash_of_the_key() -> None:
    import hashlib

    kul = localize(passphrase_key(b"maplesyrup", "SHA"), ENGINE, "SHA")
    assert priv_key(kul, "SHA", "AES") == kul[:16]
    assert priv_key(kul, "SHA", "AES-256") == (kul + hashlib.sha1(kul).digest())[:32]


def _keys() -> UsmKeys:
    kul = localize(passphrase_key(b"maplesyrup", "SHA-256"), ENGINE, "SHA-256")
    return UsmKeys(b"alice", "SHA-256", kul, priv_key(kul, "SHA-256", "AES"))


def _message() -> bytes:
    pdu = encode_pdu(RESPONSE, 4711, ((1, 3, 6, 1, 2, 1, 1, 1, 0), (1, 3, 6, 1, 2, 1, 1, 3, 0)))
    return encode_message(99, _keys(), Engine(ENGINE, 3, 1234), pdu, b"", b"12345678")


def test_authentic_message_round_trips() -> None:
    m = decode_message(_message(), _keys())
    assert (m.msg_id, m.request_id, m.engine, m.user) == (99, 4711, Engine(ENGINE, 3, 1234), b"alice")
    assert [oid for oid, _ in m.varbinds] == [(1, 3, 6, 1, 2, 1, 1, 1, 0), (1, 3, 6, 1, 2, 1, 1, 3, 0)]


def test_every_single_octet_change_is_refused() -> None:
    good = _message()
    for i in range(len(good)):
        for delta in (1, 0x80):
            bad = bytearray(good)
            bad[i] ^= delta
            with pytest.raises(BerError):
                decode_message(bytes(bad), _keys())


def test_random_garbage_and_truncations_only_raise_ber_errors() -> None:
    rng = random.Random(19)
    good = _message()
    for n in range(len(good)):
        with pytest.raises(BerError):
            decode_message(good[:n], _keys())
    for _ in range(3000):
        blob = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            blob[rng.randrange(len(blob))] = rng.randrange(256)
        with contextlib.suppress(BerError):
            decode_message(bytes(blob), _keys())


def test_another_users_keys_do_not_verify() -> None:
    other = UsmKeys(b"alice", "SHA-256", b"x" * 32, b"y" * 16)
    with pytest.raises(BerError, match="digest"):
        decode_message(_message(), other)


@pytest.mark.parametrize("alias", ["v3", "v3x"])
def test_built_in_v3_walk_matches_pysnmp(snmpd: SnmpServer, tmp_path: Path, alias: str) -> None:
    spec = "walk 1.3.6.1.2.1.1"
    ours = varbinds(run(job(snmpd, spec, alias, "3"), ctx_for(snmpd, tmp_path), SnmpProbe()))
    theirs = varbinds(
        run(job(snmpd, spec, alias, "3"), ctx_for(snmpd, tmp_path), SnmpProbe(legacy=PysnmpOracle({"3"})))
    )
    uptime = "1.3.6.1.2.1.1.3."  # ticks between the two walks
    assert len(ours) > 10
    assert [v for v in ours if not v[0].startswith(uptime)] == [
        v for v in theirs if not v[0].startswith(uptime)
    ]


def test_built_in_v3_bulk_walk_matches_net_snmp(snmpd: SnmpServer, tmp_path: Path) -> None:
    root = "1.3.6.1.2.1.2.2.1.2"  # ifDescr: stable between the two walks
    ours = varbinds(
        run(job(snmpd, f"walk {root}", "v3", "3", use_getbulk="true"), ctx_for(snmpd, tmp_path), SnmpProbe())
    )
    out = subprocess.run(
        [
            "snmpbulkwalk",
            "-v3",
            "-l",
            "authPriv",
            "-u",
            snmpd.v3_user,
            "-a",
            "SHA-256",
            "-A",
            snmpd.v3_auth,
            "-x",
            "AES",
            "-X",
            snmpd.v3_priv,
            "-On",
            "-Oqv",
            f"udp:127.0.0.1:{snmpd.port}",
            root,
        ],
        check=True,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "MIBS": ""},
    ).stdout.split()
    assert [v[2] for v in ours] == [t.strip('"') for t in out]
    assert ("1.3.6.1.2.1.2.2.1.2.1", "SnmpOctetString", "lo") in ours


@pytest.mark.parametrize(
    ("secrets", "options", "user"),
    [
        ((b"wrong-auth-pass", None), {}, None),
        ((None, b"wrong-priv-pass"), {}, None),
        ((None, None), {"auth_protocol": "SHA-512"}, None),
        ((None, None), {}, "nosuchuser"),
    ],
    ids=["auth-pass", "priv-pass", "auth-protocol", "user"],
)
def test_wrong_v3_settings_are_a_credential_error(
    snmpd: SnmpServer,
    tmp_path: Path,
    secrets: tuple[bytes | None, bytes | None],
    options: dict[str, str],
    user: str | None,
) -> None:
    auth, priv = secrets
    cred = MemCredential(
        "v3",
        "snmp-usm",
        user or snmpd.v3_user,
        (auth or snmpd.v3_auth.encode(), priv or snmpd.v3_priv.encode()),
        {"auth_protocol": "SHA-256", "priv_protocol": "AES", **options},
    )
    ctx = make_ctx(
        Policy([loopback_rule(("snmp",), ((snmpd.port, snmpd.port),), ("v3",))]),
        MemCredentials(cred),
        tmp_path,
    )
    with pytest.raises(ProbeError, match=r"SNMPv3 authentication .* failed: .*fix the snmp-usm") as e:
        run(job(snmpd, "get 1.3.6.1.2.1.1.1.0", "v3", "3", timeout="500", retries="0"), ctx, SnmpProbe())
    assert "-pass" not in str(e.value)  # the secrets never show


def _channel(snmpd: SnmpServer) -> V3Channel:
    import ipaddress

    settings = (snmpd.v3_user, "SHA-256", "AES", snmpd.v3_auth, snmpd.v3_priv)
    return V3Channel(
        ipaddress.ip_address("127.0.0.1"), snmpd.port, UsmKeyCache().maker(settings), b"", 1.0, 1, "agent"
    )


def test_a_lying_discovery_clock_is_corrected_by_the_authentic_time_window_report(snmpd: SnmpServer) -> None:
    async def go() -> tuple[int, int, bytes]:
        channel = _channel(snmpd)
        await channel.open()
        try:
            await channel.request(GET, ((1, 3, 6, 1, 2, 1, 1, 1, 0),))
            real = channel._engine
            assert real is not None and real.boots >= 1
            # As if the unauthenticated discovery report had said boots 0, time 0.
            channel._engine = Engine(real.engine_id, 0, 0)
            response = await channel.request(GET, ((1, 3, 6, 1, 2, 1, 1, 1, 0),))
            synced = channel._engine
            assert synced is not None
            value = response.varbinds[0][1][1]
            assert isinstance(value, bytes)
            return synced.boots, real.boots, value
        finally:
            channel.close()

    boots, real_boots, descr = asyncio.run(go())
    assert boots == real_boots and descr.startswith(b"Linux")


def test_time_window_of_the_non_authoritative_side() -> None:
    import ipaddress

    channel = V3Channel(ipaddress.ip_address("127.0.0.1"), 1, lambda e: _keys(), b"", 1.0, 0, "agent")
    channel._engine, channel._synced_at = Engine(ENGINE, 5, 1000), time.monotonic()
    assert channel._in_window(Engine(ENGINE, 5, 1000))
    assert channel._in_window(Engine(ENGINE, 5, 851))  # 149 s behind: inside the window
    assert not channel._in_window(Engine(ENGINE, 5, 849))  # more than 150 s behind
    assert not channel._in_window(Engine(ENGINE, 4, 99_999))  # an earlier boot
    assert not channel._in_window(Engine(ENGINE, 2**31 - 1, 0))  # boots latched at its maximum
    assert channel._in_window(Engine(ENGINE, 6, 0))  # the agent rebooted


def test_localised_keys_stay_out_of_reprs() -> None:
    keys = _keys()
    assert keys.auth_key.hex() not in repr(keys) and repr(keys.auth_key) not in repr(keys)
    assert repr(keys.priv_key) not in repr(keys)


def _jobs_on_one_probe(
    snmpd: SnmpServer, tmp_path: Path, *steps: tuple[str, Callable[[SnmpProbe], None]]
) -> list[object]:
    out: list[object] = []
    ctx = ctx_for(snmpd, tmp_path)

    async def go() -> None:
        probe = SnmpProbe()
        try:
            for alias, before in steps:
                before(probe)
                try:
                    out.append(
                        varbinds(
                            await probe.run(
                                job(snmpd, "get 1.3.6.1.2.1.1.5.0", alias, "3", timeout="500", retries="0"),
                                ctx,
                            )
                        )
                    )
                except ProbeError as e:
                    out.append(e)
        finally:
            await probe.aclose()

    asyncio.run(go())
    return out


def test_a_second_job_to_the_agent_skips_discovery(snmpd: SnmpServer, tmp_path: Path) -> None:
    with relay(snmpd) as r:
        moved = SnmpServer(**{**snmpd.__dict__, "port": r.port})
        counts: list[int] = []
        results = _jobs_on_one_probe(
            moved,
            tmp_path,
            ("v3", lambda p: counts.append(r.requests)),
            ("v3", lambda p: counts.append(r.requests)),
        )
        counts.append(r.requests)
    assert all(isinstance(x, list) and x for x in results)
    assert counts[1] - counts[0] == 2  # discovery, then the GET
    assert counts[2] - counts[1] == 1  # the GET alone


def test_a_stale_engine_is_rediscovered_and_a_wrong_key_still_rejected(
    snmpd: SnmpServer, tmp_path: Path
) -> None:
    def stale(probe: SnmpProbe) -> None:
        book = probe.opener._engines
        book.put(("127.0.0.1", snmpd.port), Engine(b"\x80\x00\x1f\x88\x80stale", 1, 1), time.monotonic())

    results = _jobs_on_one_probe(
        snmpd, tmp_path, ("v3", stale), ("v3", lambda p: None), ("v3bad", lambda p: None)
    )
    assert isinstance(results[0], list) and results[0] and results[1] == results[0]
    assert isinstance(results[2], ProbeError) and "authentication" in str(results[2])
