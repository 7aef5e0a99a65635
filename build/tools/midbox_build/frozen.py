"""What a frozen binary contains, read with PyInstaller's archive readers (needs PyInstaller importable)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

# CArchive type codes (PyInstaller.archive.readers.PKG_ITEM_*).
_BINARY = "b"
_PYZ = "z"
_DATA = "x"
_SKIP = {"o", "d", "l"}  # runtime options, dependencies, splash resources: not content


@dataclass(frozen=True)
class FrozenEntry:
    """One item of the binary's archive: a Python module, a native binary or a data file."""

    kind: str  # "module", "binary", "data", "script"
    name: str  # dotted for modules, archive path for files
    sha256: str  # of the stored (uncompressed) bytes; empty for modules


def read_entries(binary: Path) -> list[FrozenEntry]:
    from PyInstaller.archive.readers import CArchiveReader

    pkg = CArchiveReader(str(binary))
    out: list[FrozenEntry] = []
    for name, toc_entry in pkg.toc.items():
        typecode = toc_entry[-1]
        if typecode in _SKIP:
            continue
        if typecode == _PYZ:
            pyz = pkg.open_embedded_archive(name)
            out.extend(FrozenEntry("module", mod, "") for mod in pyz.toc)
        elif typecode in (_BINARY, _DATA):
            digest = hashlib.sha256(pkg.extract(name)).hexdigest()
            out.append(
                FrozenEntry("binary" if typecode == _BINARY else "data", name.replace("\\", "/"), digest)
            )
        else:  # bootstrap modules and the entry script, run before the PYZ is mounted
            out.append(FrozenEntry("script", name, ""))
    return sorted(out, key=lambda e: (e.kind, e.name))


def write_listing(entries: list[FrozenEntry], path: Path) -> None:
    lines = [f"{e.kind} {e.name} {e.sha256}".rstrip() for e in entries]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_listing(path: Path) -> list[FrozenEntry]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        kind, name, *rest = line.split(" ")
        out.append(FrozenEntry(kind, name, rest[0] if rest else ""))
    return out
