"""docs/config.md names every key the parser accepts, and ``config example`` prints a config that signs
and verifies as printed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from appliance.config import parse
from appliance.config.example import example_config
from tests.support.configs import GOOD
from tests.support.signing_cli import ok

ROOT = Path(__file__).resolve().parents[2]


def accepted_keys(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Every key the parser asks for, found by watching it parse (optional keys are asked for too)."""
    seen: set[str] = set()
    take, strings = parse._Table.take, parse._Table.strings

    def watch_take(self: Any, key: str, *a: Any, **k: Any) -> Any:
        seen.add(key)
        return take(self, key, *a, **k)

    def watch_strings(self: Any, key: str, *a: Any, **k: Any) -> Any:
        seen.add(key)
        return strings(self, key, *a, **k)

    monkeypatch.setattr(parse._Table, "take", watch_take)
    monkeypatch.setattr(parse._Table, "strings", watch_strings)
    parse.parse_config(GOOD.encode(), Path("/etc/midbox/midbox.toml"))
    return seen


def test_docs_config_md_names_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = accepted_keys(monkeypatch)
    assert {"version", "expires", "url", "ports", "credentials", "snmp_v1", "ids", "tags"} <= keys
    doc = (ROOT / "docs" / "config.md").read_text()
    missing = sorted(
        k for k in keys if not re.search(rf"`{k}`|^\s*#?\s*{k}\s*=|\[\[?{k}\]|\.{k}\]", doc, re.M)
    )
    assert missing == [], f"docs/config.md does not document {missing}: add them to its key table"


def test_the_example_names_every_key_too(monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    text = example_config("edge-01", dt.datetime.now(dt.UTC))
    missing = sorted(
        k
        for k in accepted_keys(monkeypatch)
        if not re.search(rf"^\s*#?\s*\"?{k}\"?\s*=|\[\[?{k}[\].]|\.{k}\]", text, re.M)
    )
    assert missing == []


def test_config_example_signs_and_verifies_as_printed(tmp_path: Path) -> None:
    ws, state = tmp_path / "ws", tmp_path / "state"
    ws.mkdir()
    (ws / "midbox.toml").write_text(ok("config", "example", "--name", "edge-01", cwd=ws))
    ok("keygen", "--out", "keys", "--name", "alice", "--no-passphrase", cwd=ws)
    ok("config", "sign", "midbox.toml", "--key", "keys/alice.key", cwd=ws)
    ok("trust", "init", "--pubkey", "keys/alice.pub", "--state-dir", state, cwd=ws)
    out = ok("config", "verify", "midbox.toml", "--name", "edge-01", "--state-dir", state, cwd=ws)
    assert "OK" in out and "192.0.2.0/24" in out
