"""Running ``midbox`` as the operator does: a signed config for the dev instance, the CLI, a real appliance process, its audit log."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.payload import build_results
from appliance.queue.records import OutputRecord, parse_output
from appliance.service import ServiceOptions, serve
from appliance.stoprequest import StopRequest
from hardening.audit import audit_dir
from tests.helpers import AGENT, NAME, Pki
from tests.signing.helpers import write_signed_config
from tests.support.cli import child_env

ROOT = Path(__file__).resolve().parents[2]


EXPIRES = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).replace(microsecond=0)


NOT_BEFORE = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0)


def config_bytes(url: str, p: Pki, version: int, port_rule: str) -> bytes:
    return f"""version = {version}
expires = {EXPIRES.strftime("%Y-%m-%dT%H:%M:%SZ")}

[appliance]
name = "{NAME}"

[instance]
url = "{url}"
ca_file = "{p.ca.cert}"
client_cert = "{p.client.cert}"
client_key = "{p.client.key}"
poll_interval_s = 0.1

[[allow]]
cidr = "127.0.0.1/32"
probes = ["http"]
ports = [{port_rule}]
""".encode()


@contextmanager
def appliance(
    config: Path, state_dir: Path, log: Path, *, binary: Path | None = None, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``midbox run`` from the source tree, or the frozen ``binary``; ``env`` is added to child_env()."""
    command = [str(binary)] if binary else [sys.executable, "-m", "appliance"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *command,
                "run",
                "--config",
                str(config),
                "--state-dir",
                str(state_dir),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=child_env(**env),
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_answer(store, sys_id: str, timeout: float = 20) -> dict[str, str]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = store.query("ecc_queue", f"queue=input^response_to={sys_id}")
        if rows:
            return rows[0]  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError(f"no answer to {sys_id} within {timeout} s")


def http_job(store, url: str) -> str:  # type: ignore[no-untyped-def]
    payload = f'<parameters><parameter name="url" value="{url}"/></parameters>'
    return str(
        store.enqueue([{"agent": AGENT, "topic": "RESTProbe", "source": "127.0.0.1", "payload": payload}])[0]
    )


def claimed_with_result(store, url: str) -> tuple[OutputRecord, str]:  # type: ignore[no-untyped-def]
    """A RESTProbe job for ``url``, claimed (processing), and the result payload its probe made: what an
    appliance killed after running it, before answering, leaves behind."""
    job = http_job(store, url)
    store.update("ecc_queue", job, {"state": "processing"})
    record = parse_output(store.get("ecc_queue", job))
    payload = build_results(
        result=None, echo_record=record.echo(), parameters=(), probe_time_ms=1, error=None
    )
    return record, payload


def signed_config(
    admin: Path, keys: list[Ed25519PrivateKey], body: bytes, *, name: str = NAME, version: int = 1
) -> Path:
    """``body`` as the config of appliance ``name``, signed by ``keys``, valid from an hour ago for 30 days."""
    return write_signed_config(
        admin, keys, body, name=name, version=version, expires=EXPIRES, not_before=NOT_BEFORE
    )


def audit_entries(state_dir: Path) -> list[dict[str, Any]]:
    """Entries in the order written, read straight from the log files."""
    entries: list[dict[str, Any]] = []
    for segment in sorted(audit_dir(state_dir).glob("audit-*.log")):
        entries += [json.loads(line) for line in segment.read_text().splitlines() if line]
    return entries


def audit_events(state_dir: Path) -> list[str]:
    """Event names in the order written."""
    return [e["event"] for e in audit_entries(state_dir)]


@dataclass
class ServiceThread:
    """``serve()`` in a thread of its own, as the Windows service control handler runs it."""

    thread: threading.Thread
    ready: threading.Event
    stop: StopRequest
    result: list[object]  # serve()'s exit code, or what it raised


@contextmanager
def service_thread(options: ServiceOptions) -> Iterator[ServiceThread]:
    """Start ``serve(options)`` in a thread; on the way out, request a stop and join it (40 s)."""
    ready, stop, result = threading.Event(), StopRequest(), []

    def body() -> None:  # not the main thread: no signal handlers can be installed here
        try:
            result.append(asyncio.run(serve(options, ready=ready.set, stop_request=stop)))
        except BaseException as e:
            result.append(e)

    running = ServiceThread(threading.Thread(target=body), ready, stop, result)
    running.thread.start()
    try:
        yield running
    finally:
        if running.thread.is_alive():
            stop.request()
        running.thread.join(timeout=40)
