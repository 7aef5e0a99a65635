"""Files a signed config names (CA files, the client certificate), pinned by their SHA-256.

The signature covers the config's bytes, not the files its paths point at: without a pin, whoever
can write beside the config could swap ``instance.ca_file`` for a CA of their own and be trusted as
the instance. ``midbox config sign`` writes each file's digest into the config's ``[files]`` table,
so the pins are signed too; every load and reload, ``doctor``, and every use of a pinned file checks
the bytes it reads against its pin, and uses those very bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from hardening import smallfile
from hardening.errors import HardeningError

MAX_PINNED_FILE_BYTES = 4_000_000  # a CA bundle; the system's whole store is about 200 KB
RESIGN = "midbox config sign --replace"


class FilePinError(HardeningError):
    """A file the signed config names is missing, too large, or not the file that was signed."""


@dataclass(frozen=True)
class NamedFile:
    """One file the config names: where (``instance.ca_file``), as written, resolved, and its pin."""

    key: str
    written: str
    path: Path
    sha256: str | None


def read_capped(path: Path, what: str) -> bytes:
    try:
        data = smallfile.read_capped(path, MAX_PINNED_FILE_BYTES)
    except FileNotFoundError:
        raise FilePinError(
            f"{what} {path} not found; put the file there or fix the path in the config"
        ) from None
    except OSError as e:
        raise FilePinError(f"cannot read {what} {path}: {e.strerror}") from e
    if len(data) > MAX_PINNED_FILE_BYTES:
        raise FilePinError(f"{what} {path} is larger than {MAX_PINNED_FILE_BYTES} bytes; it is not a CA file")
    return data


def read_pinned(path: Path, sha256: str | None, what: str) -> bytes:
    """The file's bytes, only if they have the pinned digest (any bytes when ``sha256`` is None)."""
    data = read_capped(path, what)
    if sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise FilePinError(
                f"{what} {path} is not the file that was signed (SHA-256 {actual[:16]}..., the signed "
                f"config pins {sha256[:16]}...); put back the signed file, or have the admins sign the "
                f"config again with '{RESIGN}'"
            )
    return data


def check_pins(files: tuple[NamedFile, ...]) -> None:
    """Every pinned file has its pinned digest; raise FilePinError naming the first that does not."""
    for f in files:
        if f.sha256 is not None:
            read_pinned(f.path, f.sha256, f.key)
