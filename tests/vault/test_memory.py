"""Secret, the redacting log filter, and process hardening (in a child, so the test runner stays dumpable)."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from hardening.vault import Secret, SecretRedactor
from tests.vault.conftest import PLANTED

ROOT = Path(__file__).resolve().parents[2]


def test_secret_never_prints() -> None:
    s = Secret(PLANTED)
    for text in (str(s), repr(s), f"{s}", f"{s!r}", "%s" % s, str([s]), str({"k": s})):  # noqa: UP031
        assert PLANTED.decode() not in text and "***" in text
    with pytest.raises(TypeError):
        pickle.dumps(s)
    view = s.reveal()
    s.wipe()
    assert len(s) == 0 and view == PLANTED


def test_secret_context_manager_wipes() -> None:
    buf = bytearray(b"abcdefgh")
    with Secret(buf) as s:
        inner = s.view().obj
    assert isinstance(inner, bytearray) and inner == bytearray()  # zeroed then emptied


def test_redactor_filters_messages_args_and_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    redactor = SecretRedactor()
    redactor.register(PLANTED)
    logger = logging.getLogger("tests.vault.redact")
    caplog.handler.addFilter(redactor)
    try:
        with caplog.at_level(logging.DEBUG, logger="tests.vault.redact"):
            logger.info("server said %s", PLANTED.decode())
            logger.info("bytes %r", PLANTED)
            logger.info("hex %s", PLANTED.hex())
            try:
                raise ValueError(f"bad password {PLANTED.decode()}")
            except ValueError:
                logger.exception("failed")
    finally:
        caplog.handler.removeFilter(redactor)
    text = caplog.text
    assert text.count("***") >= 4, text
    assert PLANTED.decode() not in text and PLANTED.hex() not in text


def test_redactor_leaves_unregistered_text_alone(caplog: pytest.LogCaptureFixture) -> None:
    redactor = SecretRedactor()
    redactor.register(b"abc")  # too short to redact without wrecking every line
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "abc and more %s", ("x",), None)
    assert redactor.filter(record) and record.getMessage() == "abc and more x"


CHILD = """
import ctypes, resource, sys
from hardening.process import harden_process, is_dumpable
before = is_dumpable()
result = harden_process()
libc = ctypes.CDLL(None)
print(before, result.core_dumps_disabled, result.non_dumpable, resource.getrlimit(resource.RLIMIT_CORE),
      libc.prctl(3, 0, 0, 0, 0))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="prctl is Linux only")
def test_harden_process_disables_core_dumps_and_dumpable() -> None:
    env = {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "")}
    out = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=30, check=True
    ).stdout.split()
    assert out == ["True", "True", "True", "(0,", "0)", "0"], out
