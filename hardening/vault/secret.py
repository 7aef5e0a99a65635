"""A secret held in a mutable buffer that prints as ``***`` and can be wiped."""

from __future__ import annotations

import contextlib
from types import TracebackType


class Secret:
    """Secret bytes. ``str``/``repr``/``format`` show ``***``; ``wipe()`` zeroes the buffer.

    Python cannot promise that no copy exists (``reveal()`` returns immutable bytes for the
    libraries that need them), but the long-lived copy is this buffer and it is zeroed on ``wipe``.
    """

    __slots__ = ("_buf",)

    def __init__(self, value: bytes | bytearray | memoryview) -> None:
        self._buf = bytearray(value)

    def __repr__(self) -> str:
        return "Secret(***)"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __len__(self) -> int:
        return len(self._buf)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        import hmac

        return hmac.compare_digest(self._buf, other._buf)

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled or copied out of the process")

    def view(self) -> memoryview:
        """A view of the buffer, valid until ``wipe``; prefer this to ``reveal`` where bytes-like works."""
        return memoryview(self._buf)

    def reveal(self) -> bytes:
        """An immutable copy for a library that insists on ``bytes``. Drop it right after use."""
        return bytes(self._buf)

    def wipe(self) -> None:
        wipe(self._buf)

    def __enter__(self) -> Secret:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.wipe()


def wipe(buf: bytearray) -> None:
    """Zero a bytearray in place (then empty it so a use after wipe fails loudly)."""
    buf[:] = bytes(len(buf))
    # A live memoryview (say, in a traceback frame) pins the size; the zeroing above already happened.
    with contextlib.suppress(BufferError):
        buf.clear()
