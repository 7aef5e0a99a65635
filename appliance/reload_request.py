"""``midbox reload`` and the running appliance talk through two files in the state dir, never a socket.

The command writes ``reload.request`` (a fresh id and the config it means); the appliance, which polls
for it, verifies its config again and writes ``reload.answer`` with the same id and its verdict.
Both are small JSON files written atomically; the 0700 state dir is what keeps others out, so they
are 0644 (a request written by root must stay readable by the service user).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from appliance._jsonfile import read_json_object
from hardening.atomic import atomic_write

REQUEST_NAME = "reload.request"
ANSWER_NAME = "reload.answer"
MAX_FILE_BYTES = 8192  # an id, a path and a one-line reason
VERDICTS = ("reloaded", "unchanged", "refused")


@dataclass(frozen=True)
class ReloadAnswer:
    request_id: str
    verdict: str  # one of VERDICTS
    version: int  # the config version running after the attempt
    config: str  # the config path the appliance runs on
    reason: str = ""  # why it was refused


def write_request(state_dir: Path, config: Path) -> str:
    request_id = secrets.token_hex(16)
    body = {"request_id": request_id, "config": str(config)}
    atomic_write(state_dir / REQUEST_NAME, json.dumps(body).encode(), mode=0o644)
    return request_id


def read_request(state_dir: Path) -> str | None:
    """The id of the reload asked for last, or None."""
    body = read_json_object(state_dir / REQUEST_NAME, MAX_FILE_BYTES)
    rid = body.get("request_id") if body else None
    return rid if isinstance(rid, str) and len(rid) == 32 else None


def write_answer(state_dir: Path, answer: ReloadAnswer) -> None:
    atomic_write(state_dir / ANSWER_NAME, json.dumps(asdict(answer)).encode(), mode=0o644)


def read_answer(state_dir: Path, request_id: str) -> ReloadAnswer | None:
    body = read_json_object(state_dir / ANSWER_NAME, MAX_FILE_BYTES)
    if not body or body.get("request_id") != request_id or body.get("verdict") not in VERDICTS:
        return None
    version, config, reason = body.get("version"), body.get("config"), body.get("reason", "")
    if not isinstance(version, int) or not isinstance(config, str) or not isinstance(reason, str):
        return None
    return ReloadAnswer(request_id, str(body["verdict"]), version, config, reason[:500])


def wait_answer(
    state_dir: Path, request_id: str, timeout_s: float, poll_s: float = 0.1
) -> ReloadAnswer | None:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = read_answer(state_dir, request_id)
        if answer is not None or time.monotonic() >= deadline:
            return answer
        time.sleep(poll_s)
