"""A strict reader of Prometheus' text exposition format (version 0.0.4), for tests.

It follows the format's rules rather than any one client's leniency: names and label names by their
grammar, label values with only the three escapes the format defines, one TYPE per family given before
its samples, a family's lines together, histogram buckets cumulative with a ``+Inf`` bucket equal to
``_count``, and a final line feed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count", "")}


class FormatError(ValueError):
    pass


@dataclass
class Family:
    name: str
    type: str = "untyped"
    help: str = ""
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


def _value(text: str, line: int) -> float:
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise FormatError(f"line {line}: {text!r} is not a value") from None


def _labels(text: str, pos: int, line: int) -> tuple[dict[str, str], int]:
    labels: dict[str, str] = {}
    while True:
        if text[pos] == "}":
            return labels, pos + 1
        m = LABEL.match(text, pos)
        if not m:
            raise FormatError(f"line {line}: bad label name at {text[pos:]!r}")
        name, pos = m.group(), m.end()
        if text[pos : pos + 2] != '="':
            raise FormatError(f'line {line}: label {name} not followed by ="')
        pos += 2
        value = []
        while True:
            if pos >= len(text):
                raise FormatError(f"line {line}: unterminated label value")
            ch = text[pos]
            if ch == "\\":
                nxt = text[pos + 1 : pos + 2]
                if nxt not in ("\\", '"', "n"):
                    raise FormatError(f"line {line}: bad escape \\{nxt}")
                value.append("\n" if nxt == "n" else nxt)
                pos += 2
            elif ch == '"':
                pos += 1
                break
            else:
                value.append(ch)
                pos += 1
        if name in labels:
            raise FormatError(f"line {line}: label {name} twice")
        labels[name] = "".join(value)
        if text[pos] == ",":
            pos += 1
        elif text[pos] != "}":
            raise FormatError(f"line {line}: expected , or }} after a label")


def _family_of(sample: str, families: dict[str, Family]) -> str:
    for fam in families.values():
        if sample == fam.name:
            return fam.name
        for suffix in SUFFIXES.get(fam.type, ()):
            if suffix and sample == fam.name + suffix:
                return fam.name
    return sample


def parse(text: str) -> dict[str, Family]:
    if not text.endswith("\n"):
        raise FormatError("the exposition must end with a line feed")
    families: dict[str, Family] = {}
    closed: set[str] = set()
    current: str | None = None
    for number, raw in enumerate(text.split("\n")[:-1], start=1):
        if not raw.strip():
            continue
        if raw.startswith("#"):
            parts = raw.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not NAME.fullmatch(name):
                    raise FormatError(f"line {number}: bad metric name {name!r}")
                fam = families.setdefault(name, Family(name))
                if name in closed or (current not in (None, name) and fam.samples):
                    raise FormatError(f"line {number}: {name} is not grouped")
                if parts[1] == "TYPE":
                    kind = parts[3] if len(parts) > 3 else ""
                    if kind not in TYPES:
                        raise FormatError(f"line {number}: unknown type {kind!r}")
                    if fam.samples or fam.type != "untyped":
                        raise FormatError(f"line {number}: TYPE for {name} after its samples or twice")
                    fam.type = kind
                else:
                    fam.help = parts[3] if len(parts) > 3 else ""
                if current not in (None, name):
                    closed.add(current)
                current = name
            continue
        m = NAME.match(raw)
        if not m:
            raise FormatError(f"line {number}: no metric name in {raw!r}")
        sample, pos = m.group(), m.end()
        labels: dict[str, str] = {}
        if pos < len(raw) and raw[pos] == "{":
            labels, pos = _labels(raw, pos + 1, number)
        rest = raw[pos:].split()
        if not raw[pos:].startswith(" ") or len(rest) not in (1, 2):
            raise FormatError(f"line {number}: expected ' value [timestamp]' in {raw!r}")
        value = _value(rest[0], number)
        if len(rest) == 2 and not re.fullmatch(r"-?\d+", rest[1]):
            raise FormatError(f"line {number}: bad timestamp {rest[1]!r}")
        name = _family_of(sample, families)
        if name in closed:
            raise FormatError(f"line {number}: samples of {name} are not together")
        if current not in (None, name):
            closed.add(current)
        current = name
        fam = families.setdefault(name, Family(name))
        fam.samples.append((sample, labels, value))
    for fam in families.values():
        if fam.type == "histogram":
            _check_histogram(fam)
    return families


def _check_histogram(fam: Family) -> None:
    series: dict[tuple[tuple[str, str], ...], dict[str, object]] = {}
    for sample, labels, value in fam.samples:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        entry = series.setdefault(key, {"buckets": []})
        if sample.endswith("_bucket"):
            if "le" not in labels:
                raise FormatError(f"{fam.name}: a bucket without le")
            entry["buckets"].append((_value(labels["le"], 0), value))  # type: ignore[union-attr]
        elif sample.endswith("_count"):
            entry["count"] = value
        elif sample.endswith("_sum"):
            entry["sum"] = value
    for key, entry in series.items():
        buckets = entry["buckets"]
        assert isinstance(buckets, list)
        bounds = [b for b, _ in buckets]
        counts = [c for _, c in buckets]
        if not buckets or bounds[-1] != math.inf:
            raise FormatError(f"{fam.name}{key}: no +Inf bucket last")
        if bounds != sorted(bounds) or counts != sorted(counts):
            raise FormatError(f"{fam.name}{key}: buckets not increasing and cumulative")
        if entry.get("count") != counts[-1] or "sum" not in entry:
            raise FormatError(f"{fam.name}{key}: _count differs from the +Inf bucket, or no _sum")
