"""The Windows service's rotating log (appliance.servicelog), checked against the standard library's
RotatingFileHandler, which it replaces so the binary ships without logging.handlers and pickle."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

import pytest

from appliance.servicelog import RotatingLogFile

FORMAT = "%(levelname)s %(name)s: %(message)s"


def _write(handler: logging.Handler, messages: list[str]) -> None:
    handler.setFormatter(logging.Formatter(FORMAT))
    for i, text in enumerate(messages):
        handler.handle(logging.LogRecord("midbox.test", logging.INFO, __file__, i, text, None, None))
    handler.close()


def _files(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir())}


def test_rotates_like_the_standard_handler(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    messages = [f"job {i} " + "x" * (i % 37) for i in range(120)]
    _write(RotatingLogFile(ours / "service.log", max_bytes=300, backups=3), messages)
    _write(
        logging.handlers.RotatingFileHandler(
            theirs / "service.log", maxBytes=300, backupCount=3, encoding="utf-8"
        ),
        messages,
    )
    assert _files(ours) == _files(theirs)
    assert sorted(_files(ours)) == ["service.log", "service.log.1", "service.log.2", "service.log.3"]
    assert messages[-1] in _files(ours)["service.log"]


def test_every_file_stays_under_the_cap_and_old_files_fall_off(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    _write(RotatingLogFile(log, max_bytes=200, backups=2), [f"line {i:04d} é" for i in range(500)])
    files = sorted(tmp_path.iterdir())
    assert [p.name for p in files] == ["service.log", "service.log.1", "service.log.2"]
    assert all(p.stat().st_size < 200 for p in files)
    assert "line 0499 é" in log.read_text(encoding="utf-8")
    assert "line 0000 é" not in "".join(p.read_text(encoding="utf-8") for p in files)


def test_appends_to_an_existing_log(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    log.write_text("before restart\n", encoding="utf-8")
    _write(RotatingLogFile(log, max_bytes=10_000, backups=1), ["after restart"])
    assert log.read_text(encoding="utf-8") == "before restart\nINFO midbox.test: after restart\n"


def test_a_record_larger_than_the_cap_is_written_once_not_rotated_forever(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    _write(RotatingLogFile(log, max_bytes=50, backups=2), ["y" * 120, "small"])
    assert "y" * 120 in (tmp_path / "service.log.1").read_text(encoding="utf-8")
    assert log.read_text(encoding="utf-8") == "INFO midbox.test: small\n"
    assert not (tmp_path / "service.log.2").exists()


@pytest.mark.parametrize(("max_bytes", "backups"), [(0, 3), (100, 0)])
def test_refuses_a_log_that_would_never_rotate(tmp_path: Path, max_bytes: int, backups: int) -> None:
    with pytest.raises(ValueError, match="above 0"):
        RotatingLogFile(tmp_path / "service.log", max_bytes=max_bytes, backups=backups)
    assert not (tmp_path / "service.log").exists()
