"""The SNMP job's parameters as ServiceNow documents them (r_SNMPProbeParameters), checked and bounded.

``use_getbulk`` defaults to false (walks use GETNEXT unless it is "true"), ``timeout`` to 1500 ms,
``retries`` to 2. ``index`` is Cisco-style community indexing: the community gets ``@INDEX`` for v1
and v2c (``0``, the documented default, means none); for v3 the same VLAN is asked for as the
context ``vlan-INDEX``, Cisco's v3 equivalent. ``result_format=JSON`` is refused: its layout is not
public. ``version`` (``1``, ``2c``, ``3``) is midbox's own extension; without it the version follows
the credential. ``request_interval``, ``request_delay``, ``established_session_timeout``,
``use_getscalar`` and ``debug`` are accepted and have no effect (midbox paces by its own caps).
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import PayloadError
from appliance.probes.base import Job
from appliance.probes.snmp.spec import SpecLine, parse_spec

MAX_TIMEOUT_MS = 60_000
MAX_RETRIES = 5
MAX_INDEX = 65_535
VERSIONS = ("1", "2c", "3")


@dataclass(frozen=True)
class SnmpParams:
    spec: tuple[SpecLine, ...]
    port: int
    timeout_s: float
    retries: int
    use_bulk: bool
    index: int  # 0: no community index / context
    version: str | None  # the job's own version (midbox extension), else None: from the credential


def parse_params(job: Job) -> SnmpParams:
    result_format = (job.param("result_format") or "").strip().upper()
    if result_format == "JSON":
        raise PayloadError(
            "result_format=JSON is not supported by midbox: the layout is not public; set the probe's "
            "result_format parameter to XML (or remove it) and use a sensor that reads the XML result"
        )
    if result_format not in ("", "XML"):
        raise PayloadError(f"result_format must be XML, got {result_format[:20]!r}")
    version = job.param("version")
    if version is not None and version.strip():
        version = version.strip().lower()
        if version in ("v1", "v2c", "v3", "2"):
            version = {"v1": "1", "v2c": "2c", "v3": "3", "2": "2c"}[version]
        if version not in VERSIONS:
            raise PayloadError(f"SNMP version must be '1', '2c' or '3', got {version[:10]!r}")
    else:
        version = None
    return SnmpParams(
        spec=tuple(parse_spec(job.param("oid_spec_list") or "")),
        port=job.int_param("port", 161, 1, 65535),
        timeout_s=job.int_param("timeout", 1500, 10, MAX_TIMEOUT_MS) / 1000,
        retries=job.int_param("retries", 2, 0, MAX_RETRIES),
        use_bulk=(job.param("use_getbulk") or "false").strip().lower() == "true",
        index=job.int_param("index", 0, 0, MAX_INDEX),
        version=version,
    )
