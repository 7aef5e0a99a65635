"""Log lines for operators from a real 'midbox run': <N> priorities under the journal, JSON lines,
httpx/httpcore quiet unless -vv, and a final 'stopped' line with the reason."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.logsetup import JsonFormatter, TextFormatter, under_journal
from appliance.status_file import read_status
from tests.helpers import Pki, dev_instance
from tests.signing.helpers import install_trust
from tests.support.cli import child_env
from tests.support.running import ROOT, config_bytes, signed_config


def run_and_stop(
    dev_pki: Pki, tmp_path: Path, state_dir: Path, extra: list[str], *, journal: bool
) -> list[str]:
    """Run until two polls succeeded, stop with SIGTERM; the lines written to stderr."""
    admin = Ed25519PrivateKey.generate()
    install_trust(state_dir, [admin])
    err = tmp_path / "stderr.log"
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        cfg = signed_config(tmp_path / "admin", [admin], config_bytes(instance.url, dev_pki, 1, "80"))
        argv = [sys.executable, "-m", "appliance", "run", "--config", str(cfg), "--state-dir", str(state_dir)]
        with err.open("wb") as out:
            env = child_env()
            if journal:
                st = os.fstat(out.fileno())
                env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
            proc = subprocess.Popen([*argv, *extra], stdout=out, stderr=out, cwd=ROOT, env=env)
            try:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    status = read_status(state_dir)
                    if status and status["polls"]["ok"] >= 3:  # type: ignore[index]
                        break
                    time.sleep(0.05)
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=30) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    return err.read_text().splitlines()


def test_under_the_journal_every_line_carries_its_priority_and_the_last_says_stopped(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    lines = run_and_stop(dev_pki, tmp_path, state_dir, [], journal=True)
    assert lines and all(line[:3] in ("<2>", "<3>", "<4>", "<6>", "<7>") for line in lines), lines[:5]
    assert lines[-1] == "<6>appliance.service: stopped: signal"
    assert not [line for line in lines if "httpx" in line or "httpcore" in line]  # one per poll otherwise


def test_run_json_gives_one_object_per_line_and_vv_lets_httpx_speak(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    lines = run_and_stop(dev_pki, tmp_path, state_dir, ["--json", "-vv"], journal=False)
    objects = [json.loads(line) for line in lines]
    assert objects[-1]["message"] == "stopped: signal" and objects[-1]["priority"] == 6
    assert {"time", "level", "logger", "message", "priority"} <= set(objects[0])
    assert any(o["logger"].startswith(("httpx", "httpcore")) for o in objects)


def test_a_journal_stream_that_is_not_our_stderr_is_ignored(tmp_path: Path) -> None:
    with (tmp_path / "f").open("w") as fh:
        st = os.fstat(fh.fileno())
        assert under_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, fh)
        assert not under_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, fh)
        assert not under_journal({"JOURNAL_STREAM": "garbage"}, fh)


def test_formatters_name_an_exception_by_type_and_prefix_every_line() -> None:
    try:
        raise ValueError("secret-value-in-message")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed\nsecond line", (), sys.exc_info())
    as_json = json.loads(JsonFormatter(journal=False).format(record))
    assert as_json["exception"] == "ValueError" and "secret-value" not in json.dumps(as_json)
    text = TextFormatter(journal=True).format(record)
    assert all(line.startswith("<3>") for line in text.splitlines())
