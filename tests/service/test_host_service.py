"""``midbox service install/uninstall/status`` on Linux, writing real unit files into a tmp dir.

systemd does not run in the test environment (and the unit never goes to the directory systemd
loads), so these show the file handling and the "run these commands" path; the systemctl path is
not exercised here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.systemd import SYSTEM_UNIT_DIR, Systemd
from tests.signing.helpers import install_trust, write_signed_config
from tests.support.cli import run_cli
from tests.support.running import EXPIRES, NOT_BEFORE
from tests.support.unit import CONFIG


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(signed config, state dir with its trust root, unit dir)."""
    key = Ed25519PrivateKey.generate()
    state = tmp_path / "state"
    install_trust(state, [key])
    text = CONFIG.replace("acme.service-now.example", "127.0.0.1").replace(
        'host = "db1.corp.example"', 'cidr = "10.30.0.0/24"'
    )
    config = write_signed_config(
        tmp_path / "cfg", [key], text.encode(), version=3, expires=EXPIRES, not_before=NOT_BEFORE
    )
    return config, state, tmp_path / "units"


def install(
    monkeypatch: pytest.MonkeyPatch, config: Path, state: Path, units: Path, *extra: str
) -> tuple[int, str, str]:
    return run_cli(
        "service",
        "install",
        "--config",
        str(config),
        "--state-dir",
        str(state),
        "--unit-dir",
        str(units),
        *extra,
    )


def test_install_writes_the_rendered_unit_and_prints_the_systemctl_commands(
    setup: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, state, units = setup
    common = ("--config", str(config), "--state-dir", str(state))
    code, rendered, _ = run_cli("service", "render-unit", *common)
    assert code == 0
    code, out, err = run_cli("service", "install", *common, "--unit-dir", str(units), "--name", "edge")
    assert code == 0, err
    unit = units / "edge.service"
    assert unit.read_text() == rendered
    assert (unit.stat().st_mode & 0o777) == 0o644
    assert "systemctl daemon-reload" in out and "systemctl enable --now edge.service" in out
    # Installing the same unit again is a no-op, not an error.
    code, out, _ = run_cli("service", "install", *common, "--unit-dir", str(units), "--name", "edge")
    assert code == 0 and "already" in out


def test_install_refuses_to_overwrite_a_different_unit_unless_forced(
    setup: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, state, units = setup
    units.mkdir()
    mine = units / "midbox.service"
    mine.write_text("[Service]\nExecStart=/bin/true\n")
    args = (
        "service",
        "install",
        "--config",
        str(config),
        "--state-dir",
        str(state),
        "--unit-dir",
        str(units),
    )
    code, _, err = run_cli(*args)
    assert code == 1 and "--force" in err and len(err.strip().splitlines()) == 1
    assert mine.read_text() == "[Service]\nExecStart=/bin/true\n"
    code, _, err = run_cli(*args, "--force")
    assert code == 0, err
    assert "IPAddressDeny=any" in mine.read_text()


def test_install_refuses_a_config_that_does_not_verify_and_writes_nothing(
    setup: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, state, units = setup
    config.write_bytes(config.read_bytes() + b"\n# edited after signing\n")
    code, _, err = install(monkeypatch, config, state, units)
    assert code == 1 and err.startswith("midbox: ")
    assert not (units / "midbox.service").exists()


def test_uninstall_removes_our_unit_and_its_enable_link_but_not_a_stranger(
    setup: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, state, units = setup
    code, _, err = install(monkeypatch, config, state, units)
    assert code == 0, err
    wants = units / "multi-user.target.wants"
    wants.mkdir()
    (wants / "midbox.service").symlink_to(units / "midbox.service")  # what 'systemctl enable' makes
    (units / "other.service").write_text("[Service]\nExecStart=/bin/true\n")

    code, out, _ = run_cli("service", "status", "--unit-dir", str(units), "--json")
    status = json.loads(out)
    assert code == 1 and status["installed"] is True and status["running"] is None

    code, out, err = run_cli("service", "uninstall", "--unit-dir", str(units))
    assert code == 0, err
    assert not (units / "midbox.service").exists() and not os.path.lexists(wants / "midbox.service")
    assert "systemctl daemon-reload" in out

    code, _, err = run_cli("service", "uninstall", "--unit-dir", str(units))
    assert code == 1 and "nothing to uninstall" in err
    code, _, err = run_cli("service", "uninstall", "--unit-dir", str(units), "--name", "other")
    assert code == 1 and "not written by midbox" in err and (units / "other.service").exists()
    code, out, _ = run_cli("service", "status", "--unit-dir", str(units))
    assert code == 1 and "not installed" in out


@pytest.mark.parametrize("name", ["../etc/passwd", "a b", "", "x" * 65, "-rf", "tmpl@x"])
def test_service_names_that_could_escape_the_unit_dir_are_usage_errors(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, _ = run_cli("service", "status", "--unit-dir", str(tmp_path), "--name", name)
    assert code == 2


def test_windows_only_parts_are_usage_errors_on_linux(
    setup: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, state, units = setup
    code, _, err = run_cli("service", "run", "--config", str(config), "--state-dir", str(state))
    assert code == 2 and "midbox run" in err
    for windows_only in (["--virtual-account"], ["--passphrase-file", str(state / "pass")]):
        code, _, _ = install(monkeypatch, config, state, units, *windows_only)
        assert code == 2 and not units.exists()


def test_systemctl_runs_only_for_the_directory_systemd_loads(tmp_path: Path) -> None:
    assert Systemd.detect(tmp_path).running is False
    live = Systemd.detect(None)
    assert live.unit_dir == SYSTEM_UNIT_DIR
    assert live.running == (Path("/run/systemd/system").is_dir() and live.systemctl is not None)


def test_a_unit_dir_that_cannot_be_written_is_one_line_and_exit_1(
    setup: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, state, units = setup
    units.write_text("not a directory")
    code, _, err = install(monkeypatch, config, state, units)
    assert code == 1 and err.startswith("midbox: cannot ") and len(err.strip().splitlines()) == 1
