"""Bulk walks in lanes (``_snmpwalk``): the same rows in the same order as one sequential walk, the
budget cut in the same place, and never more requests in flight than the per-agent cap."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.limits import Limits
from appliance.probes.snmp.probe import SnmpProbe
from tests.daemons import SnmpServer
from tests.support.snmp import ctx_for, job, run, varbinds
from tests.support.snmp_relay import relay

INSTALLED = "1.3.6.1.2.1.25.6.3"  # hrSWInstalledTable: thousands of stable rows in five columns


def walk(
    s: SnmpServer, tmp_path: Path, lanes: int, alias: str, limits: Limits | None = None
) -> list[tuple[str, str, str]]:
    el = run(
        job(s, f"walk {INSTALLED}", alias, "3" if alias == "v3" else "2c", use_getbulk="true"),
        ctx_for(s, tmp_path, limits=limits),
        SnmpProbe(per_agent=max(lanes, 4), walk_lanes=lanes),
    )
    return varbinds(el)


@pytest.mark.parametrize(("alias", "lanes"), [("v2", 2), ("v2", 8), ("v3", 2), ("v3", 8)])
def test_lanes_return_the_sequential_walk(snmpd: SnmpServer, tmp_path: Path, alias: str, lanes: int) -> None:
    # Eight lanes cut the table at every column at once; two cut it in halves, then a lane that is
    # done splits the other's range at its next column.
    one = walk(snmpd, tmp_path, 1, alias)
    many = walk(snmpd, tmp_path, lanes, alias)
    assert len(one) > 500
    assert many == one


def test_lanes_cut_by_the_varbind_cap_where_a_sequential_walk_is_cut(
    snmpd: SnmpServer, tmp_path: Path
) -> None:
    limits = Limits(snmp_varbinds=700)
    one = walk(snmpd, tmp_path, 1, "v2", limits)
    for lanes in (2, 8):
        assert walk(snmpd, tmp_path, lanes, "v2", limits) == one
    assert len(one) == 700


def test_lanes_stay_within_the_per_agent_cap(snmpd: SnmpServer, tmp_path: Path) -> None:
    with relay(snmpd) as r:
        moved = SnmpServer(**{**snmpd.__dict__, "port": r.port})
        el = run(
            job(moved, f"walk {INSTALLED}", "v2", "2c", use_getbulk="true"),
            ctx_for(moved, tmp_path),
            SnmpProbe(per_agent=3, walk_lanes=8),
        )
        rows = varbinds(el)
    assert len(rows) > 500
    assert 1 < r.most <= 3  # concurrent, and never past the cap
