"""Read a Shazzam input the way the instance's classifiers do: ``portprobe.service.field`` per address.

``ssh.ssh.result`` is the scanner's result (open, refused, timed_out, io_error), ``ssh.ssh.banner_text``
the BannerTCP banner, ``snmp.snmp.sysDescr`` what the SNMP scanner read; ``port``, ``protocol`` and
``name`` (the scanner) are there too. Where one port probe scanned several ports, an ``open`` scanner
wins over the others, else the first one listed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # nosec B405
from collections.abc import Mapping
from dataclasses import dataclass

from appliance.errors import PayloadError
from appliance.limits import MAX_PAYLOAD_BYTES
from appliance.payload import parse_xml


@dataclass(frozen=True)
class ShazzamAddress:
    ip_address: str
    alive: bool
    active: bool
    fields: Mapping[str, str]

    def get(self, path: str) -> str | None:
        """``portprobe.service.field``, e.g. ``ssh.ssh.result``; None when the result has no such field."""
        return self.fields.get(path)


def read_shazzam(payload: str) -> dict[str, ShazzamAddress]:
    """The addresses of a Shazzam ``<results>`` payload, by ``ip_address``; PayloadError if malformed."""
    root = parse_xml(payload, MAX_PAYLOAD_BYTES)
    if root.tag != "results":
        raise PayloadError(f"a Shazzam input's root is <results>, got <{root.tag[:40]}>")
    found: dict[str, ShazzamAddress] = {}
    for result in root.findall("result"):
        ip = result.get("ip_address")
        if not ip:
            raise PayloadError("a Shazzam <result> has no ip_address")
        chosen: dict[str, ET.Element] = {}
        for scanner in result.findall("scanner"):
            key = f"{scanner.get('portprobe', '')}.{scanner.get('service', '')}"
            if key not in chosen or (chosen[key].get("result") != "open" and scanner.get("result") == "open"):
                chosen[key] = scanner
        fields: dict[str, str] = {}
        for key, scanner in chosen.items():
            for attribute in ("result", "port", "protocol", "name"):
                fields[f"{key}.{attribute}"] = scanner.get(attribute, "")
            for child in scanner:
                fields[f"{key}.{child.tag}"] = child.text or ""
        found[ip] = ShazzamAddress(ip, result.get("alive") == "true", result.get("active") == "true", fields)
    return found
