"""build/manifest: compare a frozen binary with build/manifest-<os>.txt, or update the manifest.

    build/manifest check [BINARY]    exit 1 and show the difference if they differ
    build/manifest update [BINARY]   rewrite the manifest from the binary (review the diff, commit it)
    build/manifest list [BINARY]     print every module and file in the binary

Reads the binary with PyInstaller's archive reader, so run it with a Python that has PyInstaller
(the dev venv). BINARY defaults to dist/midbox-<os>-<arch>.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from midbox_build import manifest
from midbox_build.common import DIST, BuildError, host_target
from midbox_build.frozen import read_entries


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="build/manifest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("action", choices=["check", "update", "list"])
    p.add_argument("binary", type=Path, nargs="?")
    p.add_argument("--manifest", type=Path, help="manifest file (default build/manifest-<os>.txt)")
    args = p.parse_args(argv)
    try:
        target = host_target()
    except BuildError as e:
        print(f"manifest: {e}", file=sys.stderr)
        return 2
    binary = args.binary or DIST / target.binary_name
    path = args.manifest or target.manifest
    try:
        entries = read_entries(binary)
    except ImportError:
        print("manifest: PyInstaller is not importable: run with the dev venv's python", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:
        print(f"manifest: cannot read {binary}: {e}", file=sys.stderr)
        return 2
    if args.action == "list":
        for entry in entries:
            print(f"{entry.kind} {entry.name}")
        return 0
    bad = manifest.forbidden_found(entries, windows=binary.suffix.lower() == ".exe")
    if bad:
        print(
            f"manifest: {binary.name} contains modules it must not ship: {', '.join(bad)}; "
            "check the spec's EXCLUDES",
            file=sys.stderr,
        )
        return 1
    actual = manifest.manifest_lines(entries)
    if args.action == "update":
        manifest.write_manifest(path, actual)
        print(f"manifest: wrote {len(actual)} lines to {path}")
        return 0
    diff = manifest.compare(manifest.read_manifest(path), actual)
    if diff:
        print(
            f"manifest: {binary.name} differs from {path.name} (+ in binary only, - in manifest only):",
            file=sys.stderr,
        )
        for line in diff:
            print(f"  {line}", file=sys.stderr)
        print("review the change, then run: build/manifest update", file=sys.stderr)
        return 1
    print(f"manifest: {binary.name} matches {path.name} ({len(actual)} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
