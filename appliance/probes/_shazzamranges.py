"""The ``ranges`` parameter of a Shazzam job as an instance builds it: JSON (current instances,
``glide.discovery.shazzam_ranges_json``) or the older XML form. Parsed strictly, counted before expansion.

ServiceNow does not publish the JSON layout, so midbox accepts a small documented set of forms (see
docs/probes-shazzam.md) and refuses anything else naming the unknown key:

- a list of items, or an object ``{"ranges": [items], "excludes": [items]}`` (``include`` / ``exclude``
  are accepted as the same keys);
- an item is a string ("10.0.0.1", "10.0.0.1-10.0.0.40", "10.0.0.0/24") or an object with
  ``start`` + ``end``, ``network`` + ``mask`` (dotted or a prefix length) or ``address``.

XML: ``<ranges><range start=".." end=".."/><range>10.0.0.0/24</range><exclude address=".."/></ranges>``,
the same item fields as attributes, or the item string as text.
"""

from __future__ import annotations

import ipaddress
import json
import xml.etree.ElementTree as ET  # nosec B405
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from appliance.errors import PayloadError
from appliance.limits import MAX_SHAZZAM_EXCLUDES, MAX_SHAZZAM_RANGES, MAX_SHAZZAM_RANGES_BYTES
from appliance.payload import parse_xml
from hardening.policy import IPAddress

_SETTLE = (
    "a capture of a real instance's Shazzam output would settle whether it belongs; until then it is refused"
)
_ITEM_FORMS = ({"start", "end"}, {"network", "mask"}, {"address"})
_TOP_KEYS = {"ranges": "ranges", "include": "ranges", "excludes": "excludes", "exclude": "excludes"}


@dataclass(frozen=True)
class Block:
    """Consecutive addresses ``first``..``last``; ``text`` as the job wrote them."""

    text: str
    first: IPAddress
    last: IPAddress

    @property
    def size(self) -> int:
        return int(self.last) - int(self.first) + 1

    def addresses(self) -> Iterator[IPAddress]:
        cls = type(self.first)
        for value in range(int(self.first), int(self.last) + 1):
            yield cls(value)


@dataclass(frozen=True)
class Ranges:
    blocks: tuple[Block, ...]
    excludes: frozenset[IPAddress]

    @property
    def upper_bound(self) -> int:
        """Addresses before excludes and overlaps are taken out (what caps are checked against)."""
        return sum(b.size for b in self.blocks)

    def addresses(self) -> Iterator[IPAddress]:
        """Every address once, in the job's order, without the excluded ones."""
        seen: set[IPAddress] = set()
        for block in self.blocks:
            for address in block.addresses():
                if address not in self.excludes and address not in seen:
                    seen.add(address)
                    yield address

    def describe(self) -> str:
        return ",".join(b.text for b in self.blocks)


def parse_ranges(text: str) -> Ranges:
    """Parse ``ranges`` (JSON or XML); every failure is a PayloadError naming what to fix."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SHAZZAM_RANGES_BYTES:
        raise PayloadError(
            f"Shazzam 'ranges' is {size} bytes, more than the {MAX_SHAZZAM_RANGES_BYTES} allowed"
        )
    stripped = text.strip()
    if stripped.startswith("<"):
        includes, excludes = _from_xml(parse_xml(stripped, MAX_SHAZZAM_RANGES_BYTES))
    elif stripped.startswith(("[", "{")):
        includes, excludes = _from_json(stripped)
    else:
        raise PayloadError(
            "Shazzam 'ranges' must be JSON (a list, or an object with 'ranges') or <ranges> XML when the job "
            "has 'port_probes'; comma-separated CIDRs belong to midbox's own shape with 'ports'"
        )
    if not includes:
        raise PayloadError("Shazzam 'ranges' names no address, range or network to scan")
    if len(includes) > MAX_SHAZZAM_RANGES:
        raise PayloadError(f"Shazzam 'ranges' has more than {MAX_SHAZZAM_RANGES} entries")
    if len(excludes) > MAX_SHAZZAM_EXCLUDES:
        raise PayloadError(f"Shazzam 'ranges' excludes more than {MAX_SHAZZAM_EXCLUDES} entries")
    blocks = tuple(_item(i, f"ranges[{n}]") for n, i in enumerate(includes))
    excluded: set[IPAddress] = set()
    for n, item in enumerate(excludes):
        block = _item(item, f"excludes[{n}]")
        if block.size > MAX_SHAZZAM_EXCLUDES - len(excluded):
            raise PayloadError(f"Shazzam 'ranges' excludes more than {MAX_SHAZZAM_EXCLUDES} addresses")
        excluded.update(block.addresses())
    return Ranges(blocks, frozenset(excluded))


Item = str | Mapping[str, str]


def _from_json(text: str) -> tuple[list[Item], list[Item]]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise PayloadError(f"Shazzam 'ranges' is not valid JSON: {str(e)[:80]}") from e
    if isinstance(data, list):
        return _json_items(data, "ranges"), []
    if not isinstance(data, dict):
        raise PayloadError("Shazzam 'ranges' JSON must be a list or an object")
    found: dict[str, list[Item]] = {"ranges": [], "excludes": []}
    seen: set[str] = set()
    for key, value in data.items():
        canonical = _TOP_KEYS.get(key)
        if canonical is None:
            raise PayloadError(
                f"Shazzam 'ranges' JSON has unknown key {key[:40]!r} (known: {', '.join(_TOP_KEYS)}); "
                f"{_SETTLE}"
            )
        if canonical in seen:
            raise PayloadError(f"Shazzam 'ranges' JSON gives {canonical!r} twice")
        seen.add(canonical)
        if not isinstance(value, list):
            raise PayloadError(f"Shazzam 'ranges' JSON key {key!r} must hold a list")
        found[canonical] = _json_items(value, key)
    return found["ranges"], found["excludes"]


def _json_items(values: list[object], where: str) -> list[Item]:
    items: list[Item] = []
    for n, value in enumerate(values):
        if isinstance(value, str):
            items.append(value)
        elif isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            items.append({str(k): v for k, v in value.items()})
        elif isinstance(value, dict):
            raise PayloadError(f"Shazzam 'ranges' {where}[{n}]: every field must be a string")
        else:
            raise PayloadError(f"Shazzam 'ranges' {where}[{n}] must be a string or an object")
    return items


def _from_xml(root: ET.Element) -> tuple[list[Item], list[Item]]:
    if root.tag != "ranges":
        raise PayloadError(f"Shazzam 'ranges' XML root must be <ranges>, got <{root.tag[:40]}>")
    if root.attrib:
        raise PayloadError(
            f"Shazzam <ranges> has unknown attribute {next(iter(root.attrib))[:40]!r}; {_SETTLE}"
        )
    includes: list[Item] = []
    excludes: list[Item] = []
    for n, child in enumerate(root):
        if child.tag not in ("range", "exclude"):
            raise PayloadError(f"Shazzam <ranges> has unknown element <{child.tag[:40]}>; {_SETTLE}")
        if len(child):
            raise PayloadError(f"Shazzam <ranges> element {n + 1} must not have child elements")
        text = (child.text or "").strip()
        if child.attrib and text:
            raise PayloadError(f"Shazzam <ranges> element {n + 1} has both attributes and text; use one")
        item: Item = dict(child.attrib) if child.attrib else text
        (includes if child.tag == "range" else excludes).append(item)
    return includes, excludes


def _item(item: Item, where: str) -> Block:
    if isinstance(item, str):
        text = item.strip()
        if "-" in text:
            start, _, end = text.partition("-")
            return _span(text, start, end, where)
        if "/" in text:
            return _network(text, text, where)
        address = _address(text, where)
        return Block(text, address, address)
    keys = set(item)
    if keys not in _ITEM_FORMS:
        unknown = sorted(keys - {"start", "end", "network", "mask", "address"})
        if unknown:
            raise PayloadError(f"Shazzam 'ranges' {where} has unknown key {unknown[0][:40]!r}; {_SETTLE}")
        raise PayloadError(
            f"Shazzam 'ranges' {where} must have start+end, network+mask or address, "
            f"got {', '.join(sorted(keys))}"
        )
    if "start" in item:
        return _span(f"{item['start']}-{item['end']}", item["start"], item["end"], where)
    if "network" in item:
        text = f"{item['network'].strip()}/{item['mask'].strip()}"
        return _network(text, text, where)
    address = _address(item["address"], where)
    return Block(str(address), address, address)


def _address(text: str, where: str) -> IPAddress:
    text = text.strip()
    if "%" in text:
        raise PayloadError(f"Shazzam 'ranges' {where}: {text[:60]!r} carries a zone; give a plain address")
    try:
        return ipaddress.ip_address(text)
    except ValueError as e:
        raise PayloadError(f"Shazzam 'ranges' {where}: {text[:60]!r} is not an IP address") from e


def _span(text: str, start_text: str, end_text: str, where: str) -> Block:
    start, end = _address(start_text, where), _address(end_text, where)
    if start.version != end.version or int(start) > int(end):
        raise PayloadError(
            f"Shazzam 'ranges' {where}: {text[:80]!r} must run from a lower to a higher address"
        )
    return Block(text, start, end)


def _network(text: str, spec: str, where: str) -> Block:
    if "%" in spec:
        raise PayloadError(f"Shazzam 'ranges' {where}: {text[:60]!r} carries a zone; give a plain network")
    try:
        net = ipaddress.ip_network(spec, strict=True)
    except ValueError as e:
        raise PayloadError(
            f"Shazzam 'ranges' {where}: {text[:60]!r} is not a network (host bits must be zero)"
        ) from e
    first, last = net.network_address, net.broadcast_address
    if net.version == 4 and net.prefixlen < 31:
        first, last = first + 1, last - 1  # network and broadcast addresses are not hosts
    return Block(text, first, last)
