"""``midbox-dev-instance enqueue --shape`` and ``discover``.

``discover`` is driven here by a thread that answers the queued outputs with the documented sample
answers (tests/devinstance/samples.py), so the instance side's sequence is pinned before the appliance's
real Shazzam, SNMP and SSH answers exist; the demo runs the same sequence against the real appliance.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.limits import MAX_PAYLOAD_BYTES
from appliance.payload import parse_parameters, parse_xml
from devinstance import cli
from devinstance.store import Store
from tests.devinstance import samples

AGENT = "mid.server.dev-01"


def _outputs(directory: Path) -> list[dict[str, str]]:
    store = Store(directory / "instance.db")
    try:
        return store.query("ecc_queue", "queue=output^ORDERBYsys_created_on")
    finally:
        store.close()


def _params(row: dict[str, str]) -> dict[str, str]:
    return dict(parse_parameters(row["payload"], MAX_PAYLOAD_BYTES))


def test_enqueue_shazzam_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        ["enqueue", "--dir", str(tmp_path), "--agent", "dev-01", "--shape", "shazzam", "--range", "127.0.0.1",
         "--range", "127.0.0.2-127.0.0.3", "--ssh-port", "2222", "--snmp-port", "16161"]
    )  # fmt: skip
    assert code == 0
    (row,) = _outputs(tmp_path)
    assert row["sys_id"] == capsys.readouterr().out.strip()
    assert (row["agent"], row["topic"], row["name"], row["state"]) == (AGENT, "Shazzam", "Shazzam", "ready")
    params = _params(row)
    assert json.loads(params["ranges"]) == ["127.0.0.1", "127.0.0.2-127.0.0.3"]
    ports = {p.get("name"): p.get("port") for p in parse_xml(params["port_probes"], MAX_PAYLOAD_BYTES)}
    assert ports["ssh"] == "2222" and ports["snmp"] == "16161" and ports["http"] == "80"


def test_enqueue_classify_shapes_carry_hints_not_aliases(tmp_path: Path) -> None:
    base = ["enqueue", "--dir", str(tmp_path), "--agent", AGENT, "--source", "127.0.0.1"]
    assert (
        cli.main([*base, "--shape", "snmp-classify", "--snmp-port", "16161", "--credential-tag", "net"]) == 0
    )
    assert (
        cli.main([*base, "--shape", "ssh-classify", "--port", "2222", "--param", "command_timeout_ms=5000"])
        == 0
    )
    snmp, ssh = _outputs(tmp_path)
    assert (snmp["topic"], snmp["name"]) == ("SNMP", "SNMP - Classify")
    assert _params(snmp)["port"] == "16161" and _params(snmp)["credential_tag"] == "net"
    assert (ssh["topic"], ssh["name"], ssh["source"]) == (
        "SSHCommand",
        "${File:unix_classify.sh}",
        "127.0.0.1",
    )
    assert _params(ssh)["port"] == "2222" and _params(ssh)["command_timeout_ms"] == "5000"
    assert not any(n == "credential" for row in (snmp, ssh) for n in _params(row))


def test_enqueue_shape_mistakes_name_the_fix(tmp_path: Path) -> None:
    base = ["enqueue", "--dir", str(tmp_path), "--agent", AGENT]
    with pytest.raises(SystemExit, match="--range"):
        cli.main([*base, "--shape", "shazzam"])
    with pytest.raises(SystemExit, match="--source"):
        cli.main([*base, "--shape", "ssh-classify"])
    with pytest.raises(SystemExit, match="leave out --topic"):
        cli.main([*base, "--shape", "ssh-classify", "--source", "h", "--topic", "SSHCommand"])
    with pytest.raises(SystemExit, match="already set"):
        cli.main([*base, "--shape", "ssh-classify", "--source", "h", "--param", "port=1"])
    with pytest.raises(SystemExit, match="--topic"):
        cli.main(base)
    assert _outputs(tmp_path) == []


def test_push_config_queues_one_midbox_config_record_per_agent(tmp_path: Path) -> None:
    import base64

    config = tmp_path / "midbox.toml"
    config.write_bytes(b'version = 8\n[appliance]\nnames = ["a", "b"]\n')
    with pytest.raises(SystemExit, match="sign the config first"):
        cli.main(["push-config", str(config), "--dir", str(tmp_path), "--agent", "a"])
    config.with_name("midbox.toml.sig").write_bytes(b'{"format": "midbox-config-sig-v1"}\n')
    assert cli.main(["push-config", str(config), "--dir", str(tmp_path), "--agent", "a", "--agent", "b"]) == 0
    rows = sorted(_outputs(tmp_path), key=lambda r: r["agent"])
    assert [(r["agent"], r["topic"], r["priority"]) for r in rows] == [
        ("mid.server.a", "midbox.config", "1"),
        ("mid.server.b", "midbox.config", "1"),
    ]
    params = _params(rows[0])
    assert base64.b64decode(params["config"]) == config.read_bytes()
    assert base64.b64decode(params["signature"]) == config.with_name("midbox.toml.sig").read_bytes()
    assert set(params) == {"config", "signature"}


def test_enqueue_plain_topic_still_works(tmp_path: Path) -> None:
    assert (
        cli.main(["enqueue", "--dir", str(tmp_path), "--agent", "dev-01", "--topic", "HeartbeatProbe"]) == 0
    )
    (row,) = _outputs(tmp_path)
    assert (row["topic"], row["name"], row["payload"]) == (
        "HeartbeatProbe",
        "HeartbeatProbe",
        "<parameters />",
    )


class _Answerer:
    """Plays the appliance: answers each output with the sample of its kind, as an input record."""

    def __init__(self, directory: Path, ssh_answer: str) -> None:
        self.store = Store(directory / "instance.db")
        self.ssh_answer = ssh_answer
        self.seen: list[dict[str, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            for row in self.store.query("ecc_queue", "queue=output^state=ready"):
                self.seen.append(row)
                self.store.update("ecc_queue", row["sys_id"], {"state": "processing"})
                params = dict(parse_parameters(row["payload"], MAX_PAYLOAD_BYTES))
                if row["topic"] == "Shazzam":
                    probes = {p.get("name"): p.get("port") for p in parse_xml(params["port_probes"], 10**6)}
                    payload = samples.shazzam_answer(int(probes["ssh"] or 0), int(probes["snmp"] or 0))
                elif row["topic"] == "SNMP":
                    payload = samples.snmp_answer()
                else:
                    payload = self.ssh_answer
                self.store.insert(
                    "ecc_queue",
                    {"agent": row["agent"], "queue": "input", "topic": row["topic"], "name": row["name"],
                     "source": row["source"], "response_to": row["sys_id"], "payload": payload},
                )  # fmt: skip


@pytest.fixture
def answerer(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[_Answerer]:
    ans = _Answerer(tmp_path, getattr(request, "param", samples.ssh_answer()))
    thread = threading.Thread(target=ans.run, daemon=True)
    thread.start()
    yield ans
    ans.stop.set()
    thread.join(5)
    ans.store.close()


def test_discover_runs_shazzam_then_the_classifiers_its_sensor_launches(
    tmp_path: Path, answerer: _Answerer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        ["discover", "127.0.0.1/31", "--dir", str(tmp_path), "--agent", "dev-01", "--ssh-port", "2201",
         "--snmp-port", "16101", "--ssh-credential-tag", "unix", "--timeout", "20"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert [(r["topic"], r["name"], r["source"]) for r in answerer.seen] == [
        ("Shazzam", "Shazzam", "127.0.0.1/31"),
        ("SSHCommand", "${File:unix_classify.sh}", "127.0.0.1"),
        ("SNMP", "SNMP - Classify", "127.0.0.1"),
    ]
    _, ssh, snmp = (dict(parse_parameters(r["payload"], MAX_PAYLOAD_BYTES)) for r in answerer.seen)
    assert ssh["port"] == "2201" and ssh["credential_tag"] == "unix"
    assert snmp["port"] == "16101" and "credential_tag" not in snmp
    assert "ok    UNIX - Classify  127.0.0.1       Linux (Linux probe-host" in out
    assert f"sysObjectID {samples.NET_SNMP_LINUX}" in out


@pytest.mark.parametrize("answerer", [samples.ERROR_ANSWER], indirect=True)
def test_discover_reports_a_classifier_the_sensor_cannot_use(
    tmp_path: Path, answerer: _Answerer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["discover", "127.0.0.1", "--dir", str(tmp_path), "--agent", "dev-01", "--timeout", "20"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  UNIX - Classify" in out and "denied by policy" in out
    assert "ok    SNMP - Classify" in out


def test_discover_without_an_appliance_times_out_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        ["discover", "127.0.0.1", "--dir", str(tmp_path), "--agent", "dev-01", "--timeout", "0.5"]
    )
    assert code == 1
    assert "is the appliance running" in capsys.readouterr().out
