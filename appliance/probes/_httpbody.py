"""Bounded decoding of HTTP response bodies: a decompression bomb costs at most the response cap.

httpx inflates each raw chunk in one call, so 64 KiB of gzip can become 64 MiB before any cap applies.
Here every inflate step is limited to what the cap still allows.
"""

from __future__ import annotations

import zlib

# Sent by the probe, so that a target answers only in encodings decoded here (a job may ask otherwise).
ACCEPT_ENCODING = "gzip, deflate"
_GZIP_WBITS = zlib.MAX_WBITS | 16
_STEP = 256 * 1024  # bytes inflated per call: a body grows in steps as small as the wire's own chunks


class BoundedBody:
    """Collects a response body, decoded per its Content-Encoding, up to ``limit`` bytes."""

    def __init__(self, content_encoding: str, limit: int) -> None:
        self._limit = limit
        self._chunks: list[bytes] = []
        self._size = 0
        self.truncated = False
        encodings = [e.strip().lower() for e in content_encoding.split(",") if e.strip()]
        self._encoding = encodings[-1] if len(encodings) == 1 else ("" if not encodings else "stacked")
        self._inflater: zlib._Decompress | None = None
        if self._encoding in ("gzip", "x-gzip"):
            self._inflater = zlib.decompressobj(_GZIP_WBITS)
        elif self._encoding == "deflate":
            self._inflater = zlib.decompressobj()  # zlib-wrapped, as the RFC says; raw deflate is tried next
        self._first = True

    def feed(self, raw: bytes) -> None:
        """Add raw bytes from the wire; sets ``truncated`` (and ignores the rest) once the cap is reached."""
        if self.truncated or not raw:
            return
        if self._inflater is None:
            # identity, or an encoding not decoded here (the headers say which): kept as sent.
            self._keep(raw)
            return
        data = raw
        while data and not self.truncated:
            room = self._limit - self._size
            try:
                out = self._inflater.decompress(data, min(room + 1, _STEP))
            except zlib.error:
                if self._first and self._encoding == "deflate":
                    # Some servers send raw deflate under "deflate": start again without the zlib header.
                    self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                    self._first = False
                    continue
                raise
            self._first = False
            self._keep(out)
            data = self._inflater.unconsumed_tail
            if self._inflater.eof:
                break

    def _keep(self, data: bytes) -> None:
        room = self._limit - self._size
        if len(data) > room:
            data = data[:room]
            self.truncated = True
        self._chunks.append(data)
        self._size += len(data)

    def body(self) -> bytes:
        return b"".join(self._chunks)
