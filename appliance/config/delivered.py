"""Put a delivered config and its signature in place of the running pair, crash-safely.

Two files cannot be replaced in one atomic step, so the pair is staged first (``NAME.next`` and
``NAME.next.sig``, each written atomically and fsync'd), the running pair is copied to ``NAME.prev``
and ``NAME.prev.sig`` for the operator, and then the staged files are renamed over the running ones,
signature first. A crash between the two renames leaves a config that does not match its signature;
``finish_interrupted`` (called before the config is read at start) completes the swap from the
staged files, as ``hardening.signing.rollback`` completes an interrupted trust-root rotation. Staged files
are only ever written after the pair verified, so rolling forward never installs what was refused.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from hardening.atomic import atomic_write, fsync_dir

CONFIG_MODE = 0o644  # as 'midbox config sign' writes it: a config holds no secret


def signature_of(path: Path) -> Path:
    return path.with_name(path.name + ".sig")


def staged_path(config_path: Path) -> Path:
    return config_path.with_name(config_path.name + ".next")


def previous_path(config_path: Path) -> Path:
    """Where the pair that was running before the last delivered config is kept (and its .sig)."""
    return config_path.with_name(config_path.name + ".prev")


def install(config_path: Path, config: bytes, signature: bytes) -> None:
    """Stage, keep the previous pair, swap. Raises OSError with nothing changed unless the swap began.

    Must not be interleaved with a reader of the pair on the same event loop: callers run it in one
    synchronous step, so the appliance's own config watch never sees half of it.
    """
    staged = staged_path(config_path)
    try:
        # Nothing the appliance runs on changes until both staged files are on disk.
        atomic_write(staged, config, CONFIG_MODE)
        atomic_write(signature_of(staged), signature, CONFIG_MODE)
        _keep_previous(config_path)
    except OSError:
        discard_staged(config_path)
        raise
    os.replace(signature_of(staged), signature_of(config_path))
    os.replace(staged, config_path)
    fsync_dir(config_path.parent)


def _keep_previous(config_path: Path) -> None:
    previous = previous_path(config_path)
    for source, target in ((config_path, previous), (signature_of(config_path), signature_of(previous))):
        try:
            data = source.read_bytes()
        except FileNotFoundError:
            continue
        atomic_write(target, data, CONFIG_MODE)


def discard_staged(config_path: Path) -> None:
    """Best effort: the error that made the install stop is the one worth reporting."""
    staged = staged_path(config_path)
    for path in (staged, signature_of(staged)):
        with contextlib.suppress(OSError):
            path.unlink()


def finish_interrupted(config_path: Path) -> bool:
    """Complete a swap a crash interrupted; True when it did. A staged config alone (its signature
    already moved) is the interrupted case; a staged pair means the swap never began and is dropped,
    since the running pair was never touched."""
    staged = staged_path(config_path)
    if not staged.exists():
        return False
    if signature_of(staged).exists():
        discard_staged(config_path)
        return False
    os.replace(staged, config_path)
    fsync_dir(config_path.parent)
    return True
