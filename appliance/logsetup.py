"""Log lines for operators: plain text, or one JSON object per line; syslog priorities under systemd.

Under systemd (``JOURNAL_STREAM`` names the device and inode of our stderr) each line starts with
``<N>``, the syslog priority journald reads (sd-daemon(3)), so ``journalctl -p warning`` works; the
timestamp is left to the journal. httpx and httpcore log one INFO line per request (one per poll:
about 17,000 a day), so they stay at WARNING unless ``-vv``.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TextIO

# logging level -> syslog priority (sd-daemon(3): SD_ERR 3, SD_WARNING 4, SD_INFO 6, SD_DEBUG 7)
_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
LOG_FORMATS = ("text", "json")
CHATTY = ("httpx", "httpcore")


def priority(levelno: int) -> int:
    for level, prio in _PRIORITY:
        if levelno >= level:
            return prio
    return 7


class TextFormatter(logging.Formatter):
    def __init__(self, journal: bool) -> None:
        fmt = "%(name)s: %(message)s" if journal else "%(asctime)s %(levelname)s %(name)s: %(message)s"
        super().__init__(fmt)
        self._journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self._journal:
            return text
        prefix = f"<{priority(record.levelno)}>"
        # journald reads every line on its own: each carries the priority, continuation lines too.
        return "\n".join(prefix + line for line in text.split("\n"))


class JsonFormatter(logging.Formatter):
    """One object per line. An exception is named by its type only: its message may carry data."""

    def __init__(self, journal: bool) -> None:
        super().__init__()
        self._journal = journal

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "priority": priority(record.levelno),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            body["exception"] = record.exc_info[0].__name__
        line = json.dumps(body, ensure_ascii=False)
        return f"<{priority(record.levelno)}>{line}" if self._journal else line


def under_journal(environ: dict[str, str], stream: TextIO) -> bool:
    """True when ``stream`` is the journal's stream systemd connected (not a pipe the user set up)."""
    value = environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return st.st_dev == int(device) and st.st_ino == int(inode)


def configure(verbosity: int, log_format: str, environ: dict[str, str], stream: TextIO) -> None:
    """The root logger for one command: level from -v/-q, the format, and the libraries kept quiet."""
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    journal = under_journal(environ, stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(journal) if log_format == "json" else TextFormatter(journal))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity >= 2 else max(level, logging.WARNING))
