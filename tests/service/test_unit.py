"""The systemd unit rendered for a verified config: its egress list and its sandbox."""

from __future__ import annotations

import io
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.cli import main as midbox_main
from appliance.unit import SANDBOX, egress, nameservers, render
from tests.signing.helpers import install_trust, write_signed_config
from tests.support.running import EXPIRES, NOT_BEFORE
from tests.support.unit import CONFIG, FAKE_DNS, config

ROOT = Path(__file__).resolve().parents[2]


def test_egress_is_the_instance_the_proxy_dns_and_the_allowlist_and_nothing_else() -> None:
    allowed = [a for a, _ in egress(config(), lambda h: FAKE_DNS[h], ["192.0.2.53"])]
    assert allowed == ["203.0.113.7", "10.9.9.9", "192.0.2.53", "10.20.0.0/24", "10.30.0.5", "10.30.0.6"]


def test_rendered_unit_denies_everything_else() -> None:
    text = render(
        config(),
        binary=Path("/usr/local/bin/midbox"),
        config_path=Path("/etc/midbox/midbox.toml"),
        state_dir=Path("/var/lib/midbox"),
        resolver=lambda h: FAKE_DNS[h],
        dns=["127.0.0.53"],
    )
    lines = text.splitlines()
    assert "IPAddressDeny=any" in lines
    assert lines.index("IPAddressDeny=any") < lines.index("IPAddressAllow=203.0.113.7")
    assert "IPAddressAllow=127.0.0.53" in lines
    assert (
        "ExecStart=/usr/local/bin/midbox run --config /etc/midbox/midbox.toml --state-dir /var/lib/midbox"
        in lines
    )
    # systemctl reload asks the running appliance and exits with its verdict.
    assert (
        "ExecReload=/usr/local/bin/midbox reload --config /etc/midbox/midbox.toml --state-dir /var/lib/midbox"
        in lines
    )
    assert not [line for line in lines if line.startswith("IPAddressAllow=") and "0.0.0.0" in line]


def test_nameservers_come_from_resolv_conf() -> None:
    text = "# comment\nnameserver 192.0.2.1\nnameserver fe80::1%eth0\nsearch corp\nnameserver bogus\n"
    assert nameservers(text) == ["192.0.2.1", "fe80::1"]


def test_the_bundle_unit_has_the_same_sandbox() -> None:
    bundle = (ROOT / "build" / "bundle-files" / "linux" / "midbox.service").read_text().splitlines()
    directives = [line for line in bundle if "=" in line and not line.startswith("#")]
    for line in SANDBOX:
        assert line in directives, f"{line} is missing from the bundle's unit"
    assert any(line.startswith("ExecReload=@BINARY@ reload ") for line in directives)


def test_render_unit_command_verifies_the_config_first(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    key = Ed25519PrivateKey.generate()
    state = tmp_path / "state"
    install_trust(state, [key])
    text = CONFIG.replace("acme.service-now.example", "127.0.0.1").replace(
        'host = "db1.corp.example"', 'cidr = "10.30.0.0/24"'
    )
    path = write_signed_config(
        tmp_path / "cfg", [key], text.encode(), version=3, expires=EXPIRES, not_before=NOT_BEFORE
    )
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    assert midbox_main(["service", "render-unit", "--config", str(path), "--state-dir", str(state)]) == 0
    assert "IPAddressAllow=10.30.0.0/24" in out.getvalue()
    path.write_bytes(path.read_bytes() + b"\n# edited after signing\n")
    assert midbox_main(["service", "render-unit", "--config", str(path), "--state-dir", str(state)]) == 1
