"""A CycloneDX 1.5 SBOM of exactly what is inside one frozen binary.

Runs inside the build venv: the distributions are those of the venv whose top-level modules or
files are in the binary (so PyInstaller, pip and setuptools, used only to build, are not listed),
plus the Python runtime and the PyInstaller bootloader, plus every native library that no
distribution owns, with its hash. Output is sorted and its timestamp is SOURCE_DATE_EPOCH, so two
equal builds give equal SBOMs.
"""

from __future__ import annotations

import datetime
import importlib.metadata as md
import json
import platform
import uuid
from pathlib import Path

from midbox_build.frozen import FrozenEntry

# A fixed namespace so the serial number is a function of the binary's hash alone.
_NAMESPACE = uuid.UUID("6f1c1e8e-3a5e-4d55-9f0c-5b1d8a1c7e42")
_BUILD_ONLY = {"pip", "pyinstaller", "pyinstaller-hooks-contrib", "setuptools", "altgraph", "packaging"}


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _purl(name: str, version: str) -> str:
    return f"pkg:pypi/{_norm(name)}@{version}"


def _license(dist: md.Distribution) -> list[dict[str, object]]:
    exprs = dist.metadata.get_all("License-Expression") or []
    if exprs:
        return [{"expression": exprs[0].strip()}]
    classifiers = [
        c for c in dist.metadata.get_all("Classifier") or [] if c.startswith("License :: OSI Approved ::")
    ]
    return [{"license": {"name": c.rsplit("::", 1)[1].strip()}} for c in sorted(classifiers)]


def _owned_files(dist: md.Distribution) -> set[str]:
    return {str(f).replace("\\", "/") for f in dist.files or []}


def build_sbom(
    entries: list[FrozenEntry], *, binary_name: str, binary_sha256: str, version: str, commit: str, epoch: int
) -> dict[str, object]:
    tops = {e.name.split(".", 1)[0] for e in entries if e.kind == "module"}
    files = {e.name for e in entries if e.kind in ("binary", "data")}
    owners: dict[str, str] = {}
    components: dict[str, dict[str, object]] = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name is None or _norm(name) in _BUILD_ONLY:
            continue
        dist_tops = set((dist.read_text("top_level.txt") or "").split())
        owned = _owned_files(dist)
        dist_tops |= {f.split("/", 1)[0].removesuffix(".py") for f in owned if "/" in f or f.endswith(".py")}
        hit_files = sorted(owned & files)
        if not (dist_tops & tops) and not hit_files:
            continue
        for f in hit_files:
            owners[f] = name
        ref = _purl(name, dist.version)
        comp: dict[str, object] = {
            "bom-ref": ref,
            "type": "library",
            "name": _norm(name),
            "version": dist.version,
            "purl": ref,
        }
        lic = _license(dist)
        if lic:
            comp["licenses"] = lic
        components[ref] = comp
    python_ref = f"pkg:generic/cpython@{platform.python_version()}"
    components[python_ref] = {
        "bom-ref": python_ref,
        "type": "framework",
        "name": "cpython",
        "version": platform.python_version(),
        "purl": python_ref,
        "licenses": [{"license": {"id": "PSF-2.0"}}],
    }
    pyi_version = md.version("pyinstaller")
    boot_ref = f"pkg:pypi/pyinstaller@{pyi_version}"
    # Only PyInstaller's bootloader and its loader modules (pyimod*) ship; the rest builds.
    components[boot_ref] = {
        "bom-ref": boot_ref,
        "type": "library",
        "name": "pyinstaller",
        "version": pyi_version,
        "purl": boot_ref,
        "description": "bootloader and pyimod loader modules only",
        "licenses": [{"expression": "GPL-2.0-or-later WITH Bootloader-exception"}],
    }
    for e in entries:
        if e.kind == "binary" and e.name not in owners:
            ref = f"file:{e.name}"
            components[ref] = {
                "bom-ref": ref,
                "type": "file",
                "name": e.name,
                "hashes": [{"alg": "SHA-256", "content": e.sha256}],
            }
    app_ref = f"pkg:generic/midbox@{version}"
    stamp = datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid5(_NAMESPACE, binary_sha256)}",
        "version": 1,
        "metadata": {
            "timestamp": stamp,
            "component": {
                "bom-ref": app_ref,
                "type": "application",
                "name": "midbox",
                "version": version,
                "purl": app_ref,
                "hashes": [{"alg": "SHA-256", "content": binary_sha256}],
                "properties": [
                    {"name": "midbox:source-commit", "value": commit},
                    {"name": "midbox:binary", "value": binary_name},
                ],
            },
        },
        "components": [components[k] for k in sorted(components)],
        "dependencies": [{"ref": app_ref, "dependsOn": sorted(components)}],
    }


def write_sbom(sbom: dict[str, object], path: Path) -> None:
    path.write_text(json.dumps(sbom, indent=2, sort_keys=True) + "\n", encoding="utf-8")
