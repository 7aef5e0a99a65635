"""``config sign``'s pins: the ``[files]`` table written before signing, or checked when co-signing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

from appliance.config.pinning import pin_files
from appliance.errors import ConfigError
from hardening.atomic import atomic_write
from hardening.filepins import RESIGN


def write_pins(config: Path, data: bytes, *, cosigning: bool, out: TextIO) -> bytes:
    """The bytes to sign: ``data`` with its ``[files]`` table as the files are now.

    A co-signer signs the bytes the first signer signed, so nothing is rewritten then: a pinned file
    that differs here is refused (the co-signer is not looking at what was signed), and an unpinned
    one is only reported.
    """
    pinning = pin_files(data, config)
    for f in pinning.missing:
        print(
            f"warning: {f.key} ({f.written}) not found beside the config: not pinned; put it there and "
            f"sign again with '{RESIGN}'",
            file=out,
        )
    if cosigning:
        if pinning.changed:
            f = pinning.changed[0]
            raise ConfigError(
                f"{f.key} ({f.written}) is not the file the first signer pinned in [files]; get the "
                f"signed file, or start over with '{RESIGN}'"
            )
        for f in pinning.unpinned:
            print(
                f"warning: {f.key} ({f.written}) is not pinned; to pin it, start over with '{RESIGN}'",
                file=out,
            )
        return data
    if pinning.data != data:
        mode = os.stat(config).st_mode & 0o777
        atomic_write(config, pinning.data, mode=mode)
        names = ", ".join(f.key for f in pinning.pinned) or "none"
        print(f"wrote [files] into {config.name}: SHA-256 pins of {names}", file=out)
    return pinning.data
