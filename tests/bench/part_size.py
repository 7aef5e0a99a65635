"""Group 11, what each dependency costs in the one-file binary, in bytes as stored.

Reads the binary's archive with PyInstaller's reader (the dev venv has it): every native library,
data file and compressed module is charged to the distribution it comes from; what is left (the
bootloader, the archive's tables) is "bootloader". With no binary, or no PyInstaller, every row says
why instead of a figure."""

from __future__ import annotations

import collections
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.bench.common import Row, Sizes

GROUP = "11 size"
CPYTHON = "CPython (interpreter, stdlib, its libraries)"
OPENSSL = "OpenSSL (for CPython's ssl, hashlib)"
# Top-level names (module, data folder or library) -> the dependency that ships them.
OWNER = {
    "appliance": "midbox",
    "hardening": "midbox",
    "cryptography": "cryptography",
    "paramiko": "paramiko",
    "pysnmp": "pysnmp",
    "pyasn1": "pyasn1",
    "httpx": "httpx",
    "httpcore": "httpcore",
    "anyio": "anyio",
    "sniffio": "anyio",
    "h11": "h11",
    "idna": "idna",
    "certifi": "certifi",
    "nacl": "PyNaCl",
    "bcrypt": "bcrypt",
    "_cffi_backend": "cffi",
    "defusedxml": "defusedxml",
    "typing_extensions": "typing_extensions",
    "invoke": "invoke",
    "libssl.so.3": OPENSSL,
    "libcrypto.so.3": OPENSSL,
}
DEPENDENCIES = tuple(dict.fromkeys([CPYTHON, OPENSSL, *OWNER.values(), "bootloader"]))
ROWS = ("binary, total", *DEPENDENCIES)


def owner(name: str) -> str:
    top = name.split("/")[0].split(".")[0]
    if name in OWNER:
        return OWNER[name]
    if top in OWNER:
        return OWNER[top]
    if "-" in top and top.split("-")[0] in OWNER:  # NAME-VERSION.dist-info
        return OWNER[top.split("-")[0]]
    return CPYTHON


def cost(binary: Path, work: Path) -> collections.Counter[str]:
    """Bytes as stored, per dependency; they add up to the binary's size."""
    readers: Any = importlib.import_module("PyInstaller.archive.readers")
    arch = readers.CArchiveReader(str(binary))
    out: collections.Counter[str] = collections.Counter()
    stored = 0
    for name, (_pos, clen, _ulen, _flag, typ) in arch.toc.items():
        stored += clen
        if typ == "z":  # the module archive: charge each compressed module to its package
            pyz = work / "PYZ.pyz"
            pyz.write_bytes(arch.extract(name))
            charged = 0
            for module, (_t, _p, length) in readers.ZlibArchiveReader(str(pyz)).toc.items():
                out[owner(module)] += length
                charged += length
            out["bootloader"] += clen - charged  # the module archive's own table
        elif name.startswith("pyi") or name == "struct":
            out["bootloader"] += clen
        else:
            out[owner(name.replace("\\", "/"))] += clen
    out["bootloader"] += binary.stat().st_size - stored
    return out


def run(sizes: Sizes) -> Iterator[Row]:
    binary = sizes.binary
    if binary is None or not binary.exists():
        yield from (Row(GROUP, name, na="n/a: build first (python build/build), or pass --binary PATH")
                    for name in ROWS)  # fmt: skip
        return
    try:
        importlib.import_module("PyInstaller.archive.readers")
    except ImportError:
        yield from (Row(GROUP, name, na="n/a: install PyInstaller (the dev venv has it)") for name in ROWS)
        return
    total = binary.stat().st_size
    yield Row(GROUP, ROWS[0], total, "bytes", binary.name, runs=1)
    bytes_of = cost(binary, sizes.work)
    if sum(bytes_of.values()) != total:  # every byte is charged once, or the reader has changed
        raise RuntimeError(f"charged {sum(bytes_of.values()):,} of {total:,} bytes: fix part_size.cost")
    for dep in [*DEPENDENCIES, *sorted(set(bytes_of) - set(DEPENDENCIES))]:
        n = bytes_of.get(dep, 0)
        peer = "as stored (compressed)" if n else "not in this binary"
        yield Row(GROUP, dep, n, "bytes", peer, versus=f"{n / total:.1%} of the binary", runs=1)
