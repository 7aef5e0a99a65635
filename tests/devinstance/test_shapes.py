"""The real-shaped outputs parse with the appliance's own parameter parser and say what ServiceNow's do."""

from __future__ import annotations

import json

import pytest

from appliance.limits import MAX_PAYLOAD_BYTES
from appliance.payload import parse_parameters, parse_xml
from devinstance.discovery.shapes import (
    SNMP_CLASSIFY_SPEC,
    UNIX_CLASSIFY_BODY,
    PortProbe,
    ShazzamTuning,
    default_port_probes,
    shazzam_output,
    snmp_classify_output,
    ssh_classify_output,
)


def _params(payload: str) -> dict[str, str]:
    return dict(parse_parameters(payload, MAX_PAYLOAD_BYTES))


def test_shazzam_output_carries_the_port_probe_spec_json_ranges_and_tuning() -> None:
    out = shazzam_output(
        ["127.0.0.1", "10.0.0.1-10.0.0.9", "10.1.0.0/24"], default_port_probes(ssh=2222, snmp=16161)
    )
    assert (out.topic, out.name) == ("Shazzam", "Shazzam")
    params = _params(out.payload())
    assert json.loads(params["ranges"]) == ["127.0.0.1", "10.0.0.1-10.0.0.9", "10.1.0.0/24"]
    spec = parse_xml(params["port_probes"], MAX_PAYLOAD_BYTES)
    assert spec.tag == "port_probes"
    probes = {p.get("name"): p.attrib for p in spec}
    assert probes["ssh"] == {
        "name": "ssh",
        "scanner": "BannerTCP",
        "service": "ssh",
        "port": "2222",
        "protocol": "tcp",
    }
    assert probes["snmp"]["scanner"] == "SNMP" and probes["snmp"]["port"] == "16161"
    assert probes["snmp"]["protocol"] == "udp"
    assert (probes["http"]["scanner"], probes["http"]["port"]) == ("HTTP", "80")
    assert (probes["https"]["scanner"], probes["https"]["port"]) == ("HTTPS", "443")
    assert probes["wmi"]["scanner"] == "GenericTCP"
    assert params["shazzam_report_inactive"] == "true"
    assert params["shazzam_report_dead"] == "false"
    assert params["BannerTCP_waitForConnectMS"] == "1500"
    assert params["GenericTCP_waitForConnectMS"] == "1000"
    assert params["SNMP_taps"] == "2"
    assert params["SNMP_tapIntervalMS"] == "1000"
    assert "ports" not in params  # the older midbox form is not mixed in


def test_real_discovery_ports_are_the_defaults_and_tuning_is_settable() -> None:
    probes = {p.name: p.port for p in default_port_probes()}
    assert probes == {"ssh": "22", "snmp": "161", "http": "80", "https": "443", "wmi": "135"}
    out = shazzam_output(
        ["127.0.0.1"],
        [PortProbe("web", "HTTP", "http", "80,8080", "tcp")],
        ShazzamTuning(report_dead=True, snmp_taps=3),
    )
    params = _params(out.payload())
    assert params["shazzam_report_dead"] == "true" and params["SNMP_taps"] == "3"
    assert parse_xml(params["port_probes"], MAX_PAYLOAD_BYTES)[0].get("port") == "80,8080"


def test_shazzam_refuses_nothing_to_scan() -> None:
    with pytest.raises(ValueError, match="range"):
        shazzam_output([" "])
    with pytest.raises(ValueError, match="port probe"):
        shazzam_output(["127.0.0.1"], [])


def test_snmp_classify_walks_the_mib_named_system_group_without_a_credential_alias() -> None:
    out = snmp_classify_output("127.0.0.1", port=16161)
    assert (out.topic, out.name, out.source) == ("SNMP", "SNMP - Classify", "127.0.0.1")
    params = _params(out.payload())
    assert params["oid_spec_list"] == "walk iso.org.dod.internet.mgmt.mib-2.system" == SNMP_CLASSIFY_SPEC
    assert params["port"] == "16161" and params["timeout"] == "1500" and params["retries"] == "2"
    assert "credential" not in params and "credential_id" not in params and "credential_tag" not in params
    with_id = _params(snmp_classify_output("127.0.0.1", credential_id="a" * 32).payload())
    assert with_id["credential_id"] == "a" * 32 and "credential" not in with_id


def test_ssh_classify_includes_its_script_from_a_parameter_of_that_name() -> None:
    out = ssh_classify_output("127.0.0.1", port=2222, credential_tag="unix-ro")
    assert out.topic == "SSHCommand" and out.source == "127.0.0.1"
    assert out.name == "${File:unix_classify.sh}"
    params = _params(out.payload())
    assert params["unix_classify.sh"] == UNIX_CLASSIFY_BODY  # newlines survive the attribute round trip
    assert "uname -a" in params["unix_classify.sh"]
    assert params["port"] == "2222" and params["credential_tag"] == "unix-ro"
    assert "credential" not in params
    assert _params(ssh_classify_output("10.0.0.5").payload())["port"] == "22"


def test_hostile_values_are_escaped_not_interpreted() -> None:
    out = ssh_classify_output("127.0.0.1", extra={"note": '"/><parameter name="credential" value="root'})
    params = _params(out.payload())
    assert "credential" not in params
    assert params["note"].startswith('"/>')
