"""What each dependency costs in the one-file binary, in bytes as stored (not part of the test run).

    python -m tests.bench.bench_size dist/midbox-linux-x86_64      # needs PyInstaller (the dev venv)

Reads the binary's archive: every native library, data file and compressed module is charged to the
distribution it comes from; what is left (the bootloader, the archive's tables) is "bootloader".
"""

from __future__ import annotations

import argparse
import collections
import tempfile
from pathlib import Path

from PyInstaller.archive.readers import CArchiveReader, ZlibArchiveReader

# Top-level names (module, data folder or library) -> the dependency that ships them.
OWNER = {
    "cryptography": "cryptography",
    "paramiko": "paramiko",
    "pysnmp": "pysnmp",
    "pyasn1": "pyasn1",
    "httpx": "httpx",
    "httpcore": "httpcore",
    "anyio": "anyio",
    "h11": "h11",
    "idna": "idna",
    "sniffio": "anyio",
    "certifi": "certifi",
    "nacl": "PyNaCl",
    "bcrypt": "bcrypt",
    "_cffi_backend": "cffi",
    "defusedxml": "defusedxml",
    "typing_extensions": "typing_extensions",
    "invoke": "invoke",
    "appliance": "midbox",
    "hardening": "midbox",
    "libssl.so.3": "OpenSSL (for CPython's ssl, hashlib)",
    "libcrypto.so.3": "OpenSSL (for CPython's ssl, hashlib)",
}


def owner(name: str) -> str:
    top = name.replace("\\", "/").split("/")[0].split(".")[0] if "/" in name else name.split(".")[0]
    if name in OWNER:
        return OWNER[name]
    if top in OWNER:
        return OWNER[top]
    if "-" in top and top.split("-")[0] in OWNER:  # NAME-VERSION.dist-info
        return OWNER[top.split("-")[0]]
    return "CPython (interpreter, stdlib, its libraries)"


def sizes(binary: Path) -> collections.Counter[str]:
    arch = CArchiveReader(str(binary))
    cost: collections.Counter[str] = collections.Counter()
    stored = 0
    for name, (_pos, clen, _ulen, _flag, typ) in arch.toc.items():
        stored += clen
        if typ == "z":  # the module archive: charge each compressed module to its package
            with tempfile.TemporaryDirectory() as tmp:
                pyz = Path(tmp) / "PYZ.pyz"
                pyz.write_bytes(arch.extract(name))
                modules = ZlibArchiveReader(str(pyz))
                charged = 0
                for mod, (_t, _p, length) in modules.toc.items():
                    cost[owner(mod)] += length
                    charged += length
                cost["bootloader"] += clen - charged
        elif name.startswith("pyi") or name in ("struct", "PYZ.pyz"):
            cost["bootloader"] += clen
        else:
            cost[owner(name)] += clen
    cost["bootloader"] += binary.stat().st_size - stored
    return cost


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("binary", type=Path)
    args = ap.parse_args()
    cost = sizes(args.binary)
    total = args.binary.stat().st_size
    print("| dependency | bytes | share |\n|---|---:|---:|")
    for dep, n in cost.most_common():
        print(f"| {dep} | {n:,} | {n / total:.1%} |")
    print(f"| **total** | **{total:,}** | |")


if __name__ == "__main__":
    main()
