"""Text that is safe inside XML 1.0: characters the format forbids become U+FFFD."""

from __future__ import annotations

import re

# XML 1.0 allows #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF].
_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(data: bytes | str) -> str:
    """Decode ``data`` as UTF-8 (invalid bytes replaced) and replace characters XML cannot carry."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    return _FORBIDDEN.sub("\ufffd", text)
