"""Runs inside the build venv after PyInstaller: writes the full content listing and the SBOM."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from midbox_build.common import sha256_file
from midbox_build.frozen import read_entries, write_listing
from midbox_build.sbom import build_sbom, write_sbom


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("binary", type=Path)
    p.add_argument("--listing", type=Path, required=True)
    p.add_argument("--sbom", type=Path, required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--commit", required=True)
    p.add_argument("--epoch", type=int, required=True)
    args = p.parse_args(argv)
    entries = read_entries(args.binary)
    write_listing(entries, args.listing)
    sbom = build_sbom(
        entries,
        binary_name=args.binary.name,
        binary_sha256=sha256_file(args.binary),
        version=args.version,
        commit=args.commit,
        epoch=args.epoch,
    )
    write_sbom(sbom, args.sbom)
    return 0


if __name__ == "__main__":
    sys.exit(main())
