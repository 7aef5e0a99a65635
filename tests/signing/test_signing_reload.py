"""Reload while running: the new config is verified first; on failure the old one stays, with a reason."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from appliance.config.verify import fingerprint, load_verified_config, try_reload
from tests.signing.helpers import NOW, config_toml, make_signed_setup, write_signed_config


class Audit:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []

    def record(self, event: str, fields: Mapping[str, object]) -> None:
        self.events.append((event, dict(fields)))


def test_reload_accepts_newer_and_keeps_old_on_failure(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path)
    current = load_verified_config(s.config, s.state_dir, NOW)
    audit = Audit()
    before = fingerprint(s.config)

    same = try_reload(current, s.config, s.state_dir, NOW, audit)
    assert same.config is current and not same.changed and audit.events == []

    s.config.write_bytes(config_toml(version=8))  # edited on the appliance, signature left as is
    assert fingerprint(s.config) != before
    refused = try_reload(current, s.config, s.state_dir, NOW, audit)
    assert refused.config is current and not refused.changed
    assert refused.reason is not None and "changed after signing" in refused.reason
    assert audit.events[-1][0] == "config.reload_refused" and audit.events[-1][1]["kept_version"] == 7

    write_signed_config(s.workstation, s.keys, name="edge-02", version=9)
    refused = try_reload(current, s.config, s.state_dir, NOW, audit)
    assert refused.reason is not None and "but this is 'edge-01'" in refused.reason

    write_signed_config(s.workstation, s.keys, version=8)
    done = try_reload(current, s.config, s.state_dir, NOW, audit)
    assert done.changed and done.config.version == 8
    assert audit.events[-1][0] == "config.reloaded" and audit.events[-1][1]["config_version"] == 8
