"""SNMP probe helpers: a job, a context for it, one run, the varbinds of an answer."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path

from appliance.limits import Limits
from appliance.mib.table import mib_table
from appliance.probes.base import ProbeContext
from appliance.probes.snmp.probe import SnmpProbe
from hardening.policy import Policy
from tests.daemons import SnmpServer
from tests.probes.conftest import MemCredential, MemCredentials, loopback_rule, make_ctx, make_job
from tests.support.pysnmp_oracle import PysnmpOracle

# The versions new probes send through the pysnmp oracle (none: all on the built-in codec).
PROBE_KW: dict[str, tuple[str, ...]] = {"oracle": ()}


def new_probe(**kw: int) -> SnmpProbe:
    versions = PROBE_KW["oracle"]
    return SnmpProbe(**kw, legacy=PysnmpOracle(versions) if versions else None)


def creds(s: SnmpServer) -> MemCredentials:
    return MemCredentials(
        MemCredential("v2", "snmp-community", None, (s.community.encode(),)),
        MemCredential("v2bad", "snmp-community", None, (b"wrong-community",)),
        MemCredential(
            "v3",
            "snmp-usm",
            s.v3_user,
            (s.v3_auth.encode(), s.v3_priv.encode()),
            {"auth_protocol": "SHA-256", "priv_protocol": "AES"},
        ),
        MemCredential(
            "v3x",
            "snmp-usm",
            s.v3_user_aes256,
            (s.v3_auth.encode(), s.v3_priv.encode()),
            {"auth_protocol": "SHA-512", "priv_protocol": "AES-256"},
        ),
        MemCredential(
            "v3bad",
            "snmp-usm",
            s.v3_user,
            (b"wrong-auth-pass", s.v3_priv.encode()),
            {"auth_protocol": "SHA-256", "priv_protocol": "AES"},
        ),
        MemCredential("sshpw", "ssh-password", "root", (b"x",)),
    )


ALL = ("v2", "v2bad", "v3", "v3x", "v3bad", "sshpw")


def ctx_for(
    s: SnmpServer, tmp_path: Path, aliases: tuple[str, ...] = ALL, limits: Limits | None = None
) -> ProbeContext:
    return make_ctx(
        Policy([loopback_rule(("snmp",), ((s.port, s.port),), aliases)]), creds(s), tmp_path, limits
    )


def job(s: SnmpServer, spec: str, alias: str = "v2", version: str = "", host: str = "127.0.0.1", **kw: str):  # type: ignore[no-untyped-def]
    if version:
        kw["version"] = version
    return make_job("SNMP", "snmp", host, oid_spec_list=spec, port=str(s.port), credential=alias, **kw)


def run(job, ctx, probe: SnmpProbe | None = None) -> ET.Element:  # type: ignore[no-untyped-def]
    p = probe or new_probe()

    async def go() -> ET.Element:
        try:
            return await p.run(job, ctx)
        finally:
            await p.aclose()

    return asyncio.run(go())


def varbinds(el: ET.Element) -> list[tuple[str, str, str]]:
    """(numeric OID, type, text) of every leaf of the result tree, in document order.

    Scalars carry their object OID (instance .0 implied), unnamed leaves their full OID, and table
    cells are found by their column name in the compiled-in table plus their entry's instance.
    """
    out = []
    rows = {id(cell): row for row in el.iter() if "instance" in row.attrib for cell in row}
    for leaf in el.iter():
        kind = leaf.get("type")
        if kind is None:
            continue
        if id(leaf) in rows:
            oid = ".".join(str(a) for a in mib_table().by_name[leaf.tag].oid) + rows[id(leaf)].get(
                "instance", ""
            )
        elif leaf.tag == "unnamed":
            oid = leaf.get("oid", "")
        else:
            oid = leaf.get("oid", "") + leaf.get("instance", ".0")
        out.append((oid, kind, leaf.text or ""))
    return out
