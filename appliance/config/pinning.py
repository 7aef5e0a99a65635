"""``config sign``'s first step: the ``[files]`` table of SHA-256 pins, written into the config's text.

The table is the last one in the file, under a marker comment; signing again replaces it and nothing
else. The rewrite is checked: the new text must parse to the same config plus exactly these pins.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from appliance.config.parse import parse_config
from appliance.errors import ConfigError
from hardening.filepins import FilePinError, NamedFile, read_capped

MARK = b"# SHA-256 of each file this config names; written by 'midbox config sign' (keep it last)."
_FILES_HEADER = re.compile(rb"^[ \t]*\[[ \t]*files[ \t]*\][ \t]*(#.*)?$")
_TABLE_HEADER = re.compile(rb"^[ \t]*\[")


@dataclass(frozen=True)
class Pinning:
    data: bytes  # the config with its [files] table as the files on disk are now
    pinned: tuple[NamedFile, ...]  # files found, with the digest they have now
    changed: tuple[NamedFile, ...]  # pinned in the config, but the file on disk differs (or is gone)
    unpinned: tuple[NamedFile, ...]  # found on disk, not pinned in the config
    missing: tuple[NamedFile, ...]  # not found on disk: cannot be pinned


def pin_files(data: bytes, source: Path) -> Pinning:
    parsed = parse_config(data, source)
    digests: dict[str, str] = {}
    pinned: list[NamedFile] = []
    changed: list[NamedFile] = []
    unpinned: list[NamedFile] = []
    missing: list[NamedFile] = []
    for f in parsed.files:
        try:
            digest = hashlib.sha256(read_capped(f.path, f.key)).hexdigest()
        except FilePinError:
            missing.append(f)
            if f.sha256 is not None:
                changed.append(f)
            continue
        digests[f.written] = digest
        pinned.append(NamedFile(f.key, f.written, f.path, digest))
        if f.sha256 is None:
            unpinned.append(f)
        elif f.sha256 != digest:
            changed.append(f)
    current = {f.written: f.sha256 for f in parsed.files if f.sha256 is not None}
    new = data if current == digests else _rewrite(data, source, digests)
    return Pinning(new, tuple(pinned), tuple(changed), tuple(unpinned), tuple(missing))


def _rewrite(data: bytes, source: Path, digests: dict[str, str]) -> bytes:
    lines = data.splitlines(keepends=True)
    at = next((i for i, line in enumerate(lines) if _FILES_HEADER.match(line.rstrip(b"\r\n"))), None)
    head = lines
    if at is not None:
        if any(_TABLE_HEADER.match(line) for line in lines[at + 1 :]):
            raise ConfigError(
                f"config: {source.name}: [files] must be the last table (config sign rewrites it); "
                "move it to the end of the file or delete it"
            )
        head = lines[:at]
        if head and head[-1].rstrip(b"\r\n") == MARK:
            head = head[:-1]
    text = b"".join(head).rstrip(b"\r\n \t") + b"\n"
    if digests:
        entries = "".join(
            f'{json.dumps(k, ensure_ascii=False)} = "{v}"\n' for k, v in sorted(digests.items())
        )
        text += b"\n" + MARK + b"\n[files]\n" + entries.encode()
    _check_rewrite(data, text, source, digests)
    return text


def _check_rewrite(old: bytes, new: bytes, source: Path, digests: dict[str, str]) -> None:
    """The rewrite changed the pins and nothing else, or it is refused."""
    try:
        before = tomllib.loads(old.decode("utf-8"))
        after = tomllib.loads(new.decode("utf-8"))
        pins = {f.written: f.sha256 for f in parse_config(new, source).files if f.sha256}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, ValueError, ConfigError) as e:
        raise ConfigError(
            f"config: the [files] table could not be written into {source.name} ({e}); "
            "write it by hand as docs/config.md shows"
        ) from e
    before.pop("files", None)
    if after.pop("files", {}) != digests or after != before or pins != digests:
        raise ConfigError(
            f"config: writing the [files] table into {source.name} would change more than the pins; "
            "move any [files] text out of strings, or write the table by hand as docs/config.md shows"
        )
