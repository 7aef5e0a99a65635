"""A full appliance run with an http-basic credential: the planted secret is used, and written nowhere.

Every byte under tmp_path (state dir with journal, outbox, status.json and audit log, the development
instance's database and its journal files) and every log record at DEBUG is searched for the
secret in the forms it could leak in (plain, base64 in a header, hex, repr).
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import defusedxml.ElementTree as SafeET

from appliance.app import run_appliance
from appliance.credentials import load_host_key, open_credentials
from appliance.logsetup import JsonFormatter, TextFormatter
from hardening.audit import open_audit_log
from tests.helpers import AGENT, Pki, config_text, dev_instance, fast_limits, inputs, params, trusted

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"e2e-Pl4nted-pa55word-91c2"
USER = "probeuser"
ALIAS = "web-basic"
ALLOW = f"""
[[allow]]
cidr = "127.0.0.0/8"
probes = ["http"]
ports = ["1-65535"]
credentials = ["{ALIAS}"]
"""


def needles() -> list[bytes]:
    header = base64.b64encode(USER.encode() + b":" + SECRET)
    return [
        SECRET,
        SECRET.hex().encode(),
        base64.b64encode(SECRET),
        header,
        header.decode().encode("utf-16-le"),
        SECRET.decode().encode("utf-16-le"),
    ]


def leaks_in(root: Path) -> list[str]:
    found = []
    for directory, _, files in os.walk(root):
        for name in files:
            data = (Path(directory) / name).read_bytes()
            found += [
                f"{Path(directory, name).relative_to(root)}: {n[:12]!r}" for n in needles() if n in data
            ]
    return found


@contextmanager
def basic_auth_target(seen: list[bool]) -> Iterator[str]:
    expected = "Basic " + base64.b64encode(USER.encode() + b":" + SECRET).decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            ok = self.headers.get("Authorization") == expected
            seen.append(ok)
            body = b"welcome" if ok else b"who are you"
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        # ... and as operators see them: JSON lines and journal lines (appliance/logsetup.py).
        for formatter in (JsonFormatter(journal=True), TextFormatter(journal=True)):
            self.lines.append(formatter.format(record))


def test_the_grep_finds_a_leak(tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(b"prefix" + base64.b64encode(USER.encode() + b":" + SECRET) + b"suffix")
    assert leaks_in(tmp_path)


def test_full_run_uses_the_secret_and_writes_it_nowhere(dev_pki: Pki, tmp_path: Path) -> None:
    state = tmp_path / "state"
    # The operator adds the credential through the real CLI, secret on stdin.
    env = {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "")}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance",
            "creds",
            "add",
            ALIAS,
            "--type",
            "http-basic",
            "--user",
            USER,
            "--state-dir",
            str(state),
        ],
        input=SECRET + b"\n",
        env=env,
        check=True,
        timeout=60,
    )
    seen: list[bool] = []
    capture = Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, basic_auth_target(seen) as target:
            store = instance.state.store
            [sys_id] = store.enqueue(
                [
                    {
                        "agent": AGENT,
                        "topic": "RESTProbe",
                        "name": "secured",
                        "source": "127.0.0.1",
                        "payload": params(url=f"{target}/secure", http_method="GET", credential=ALIAS),
                    }
                ]
            )
            config = trusted(config_text(instance.url, dev_pki, ALLOW), tmp_path / "c.toml")
            credentials = open_credentials(state)
            seal_key = load_host_key(state)

            async def scenario() -> None:
                stop = asyncio.Event()
                with open_audit_log(state) as audit:
                    task = asyncio.create_task(
                        run_appliance(
                            config,
                            state_dir=state,
                            audit=audit,
                            credentials=credentials,
                            stop=stop,
                            limits=fast_limits(),
                            seal_key=seal_key,
                        )
                    )
                    deadline = time.monotonic() + 20
                    while not inputs(store) and time.monotonic() < deadline and not task.done():
                        await asyncio.sleep(0.02)
                    stop.set()
                    await asyncio.wait_for(task, 30)

            asyncio.run(scenario())
            credentials.close()
            [result] = inputs(store)
            rows = store.query("ecc_queue", "")
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
    # The secret was really used: the target saw the right header and the job got its 200.
    assert seen == [True]
    assert result["response_to"] == sys_id and result["error_string"] == ""
    answer = SafeET.fromstring(result["payload"])
    assert answer.find("result").get("status") == "200"
    # ... and it is nowhere on disk, in the ECC records, or in any log line.
    assert (state / "status.json").is_file(), "the status file should be among what is searched"
    assert leaks_in(tmp_path) == []
    audit_bytes = b"".join(f.read_bytes() for f in (state / "audit").rglob("*") if f.is_file())
    assert b"credential.used" in audit_bytes and ALIAS.encode() in audit_bytes, "no credential use audited"
    assert len(capture.lines) > 10, "no log records were captured: nothing was checked"
    log_text = "\n".join(capture.lines).encode()
    assert [n[:12] for n in needles() if n in log_text] == []
    assert len(rows) >= 2 and all(SECRET not in repr(row).encode() for row in rows)
