"""A logging filter that replaces any known secret in a log record with ``***``.

Probes get credential handles, so a secret should never reach a log call; this is the second line
for the case where a library echoes one back (a server banner, an exception text).
"""

from __future__ import annotations

import logging
import threading

# Shorter values would redact ordinary words from every line; the store refuses shorter secrets
# of the types where that matters (SNMPv3) and the CLI warns on the others.
MIN_REDACT_CHARS = 4


class SecretRedactor(logging.Filter):
    """Attach to handlers (``handler.addFilter``); secrets are registered as they are resolved."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._needles: set[str] = set()

    def register(self, secret: bytes | bytearray | memoryview) -> None:
        raw = bytes(secret)
        forms = {raw.decode("utf-8", "replace"), raw.decode("latin-1")}
        forms |= {repr(raw)[2:-1], raw.hex()}
        with self._lock:
            self._needles |= {f for f in forms if len(f) >= MIN_REDACT_CHARS}

    def redact(self, text: str) -> str:
        with self._lock:
            needles = sorted(self._needles, key=len, reverse=True)
        for needle in needles:
            if needle in text:
                text = text.replace(needle, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._needles:
            return True
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
            record.exc_info = None
        return True

    def install(self, logger: logging.Logger | None = None) -> None:
        """Add this filter to every handler of ``logger`` (default: the root logger)."""
        target = logger or logging.getLogger()
        for handler in target.handlers:
            if self not in handler.filters:
                handler.addFilter(self)
