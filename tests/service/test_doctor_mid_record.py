"""``midbox doctor`` shows this MID's ecc_agent record and says what to do until it can be selected."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.doctor import Level, check_agent_record
from tests.helpers import NAME, Pki, dev_instance
from tests.support.doctor import doctor, signed_config


@pytest.mark.parametrize(
    ("record", "level", "words"),
    [
        (None, "WARN", ["no ecc_agent record", "MID Server > Servers > New", "docs/servicenow.md"]),
        (
            {"validated": False, "status": "Down"},
            "WARN",
            ["validated false", "must validate", "docs/servicenow.md"],
        ),
        ({"validated": True, "status": "Down"}, "WARN", ["status Down", "only Up MIDs", "midbox run"]),
        ({"validated": True, "status": "Up"}, "ok", ["status Up, validated true"]),
    ],
)
def test_doctor_shows_the_mid_record(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    state_dir: Path,
    dev_pki: Pki,
    signed: tuple[Path, Ed25519PrivateKey],
    record: dict[str, object] | None,
    level: str,
    words: list[str],
) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        store = instance.state.store
        if record is not None:
            row = store.ensure_agent(NAME, validated=bool(record["validated"]))
            store.update("ecc_agent", row["sys_id"], {"status": record["status"]})
        config = signed_config(signed, instance.url, dev_pki)
        code, found = doctor("--config", str(config), "--state-dir", str(state_dir))
        assert instance.state.agent_writes == []  # doctor only reads
    assert code == 0  # a record to fix is a warning: the host itself is fine
    finding = found["MID record"]
    assert finding["level"] == level, finding
    for w in words:
        assert w in finding["detail"], finding


@pytest.mark.parametrize("body", [b"not json", b'{"result": "x"}', b"[]", b'{"result": [1]}'])
def test_an_unreadable_record_answer_is_a_warning(body: bytes) -> None:
    [finding] = check_agent_record(body, NAME)
    assert finding.level is Level.WARN
