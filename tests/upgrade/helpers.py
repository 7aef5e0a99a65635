"""Release bundles for upgrade tests, made by build/bundle's own code around a small launcher.

The frozen binary takes minutes to build; a bundle may hold any executable as ``midbox``, so each
"release" here is a shell script that runs this checkout's ``python -m appliance`` reporting the given
version (or, for a broken release, one that fails to start).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hardening.release import public_key_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "build" / "tools"))

PLATFORM = "linux-x86_64"


def launcher(version: str) -> str:
    """A 'midbox' of ``version``: this checkout's code, its __version__ set before anything reads it."""
    code = f'import sys, appliance; appliance.__version__ = "{version}"; from appliance.cli import main; sys.exit(main())'
    return f"#!/bin/sh\nexec {sys.executable} -c '{code}' \"$@\"\n"


def broken(version: str) -> str:
    """A 'midbox' of ``version`` that cannot start: the failed start an upgrade must survive."""
    return f"#!/bin/sh\necho 'midbox {version}: forced start failure' >&2\nexit 1\n"


def hung(version: str) -> str:
    """A 'midbox' of ``version`` that starts and never polls: only the deadline can catch it."""
    return "#!/bin/sh\nexec sleep 3600\n"


def release_key(directory: Path) -> tuple[Path, Path]:
    """(private PEM, minisign public key file) of a fresh release key."""
    key = Ed25519PrivateKey.generate()
    pem, pub = directory / "release.pem", directory / "release.pub"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    pub.write_bytes(public_key_file(key.public_key()))
    return pem, pub


def make_bundle(directory: Path, version: str, script: str, pem: Path, platform: str = PLATFORM) -> Path:
    """A signed bundle of ``version`` made by build/bundle, holding ``script`` as the binary."""
    from midbox_build.bundle import main as bundle_main

    work = directory / f"build-{version}"
    work.mkdir()
    binary = work / f"midbox-{platform}{'.exe' if platform.startswith('windows') else ''}"
    binary.write_text(script)
    binary.chmod(0o755)
    sbom = {
        "metadata": {
            "timestamp": "2026-11-01T00:00:00Z",
            "component": {
                "version": version,
                "properties": [{"name": "midbox:source-commit", "value": "t" * 40}],
            },
        }
    }
    (work / f"{binary.name}.cdx.json").write_text(json.dumps(sbom))
    assert bundle_main(["--binary", str(binary), "--key", str(pem), "--out", str(work / "out")]) == 0
    return work / "out" / f"midbox-{version}-{platform}.tar.gz"
