"""Sensors read the documented answer layouts and decide the next step as an instance would."""

from __future__ import annotations

import pytest

from devinstance.discovery.sensors import (
    SensorError,
    classifiers_to_launch,
    read_shazzam,
    read_snmp_classify,
    read_ssh_classify,
)
from tests.devinstance import samples


def test_shazzam_sensor_reads_one_host_per_result_with_its_scanners() -> None:
    hosts = read_shazzam(samples.shazzam_answer())
    assert [h.ip_address for h in hosts] == ["127.0.0.1", "127.0.0.2"]
    first, second = hosts
    assert first.alive and first.active and second.alive and not second.active
    assert first.value("ssh.ssh.result") == "open"
    assert first.value("ssh.ssh.banner_text") == samples.SSH_BANNER
    assert first.value("snmp.snmp.sysDescr") == samples.SYS_DESCR
    assert first.value("http.http.result") == "refused"
    assert first.value("wmi.epmap.result") == "timed_out"
    assert first.value("nbt.nbt.result") is None


def test_shazzam_sensor_launches_classifiers_in_port_probe_priority() -> None:
    first, second = read_shazzam(samples.shazzam_answer(ssh_port=2201, snmp_port=16101))
    launches = classifiers_to_launch(first)
    assert [(x.classifier, x.address, x.port) for x in launches] == [
        ("UNIX - Classify", "127.0.0.1", 2201),
        ("SNMP - Classify", "127.0.0.1", 16101),
    ]
    assert classifiers_to_launch(second) == []


def test_no_snmp_classify_without_a_sysdescr_and_no_unix_classify_without_an_ssh_banner() -> None:
    answer = (
        samples.shazzam_answer()
        .replace(f"<sysDescr>{samples.SYS_DESCR}</sysDescr>", "")
        .replace(samples.SSH_BANNER, "220 mail.example ESMTP")
    )
    (host, _) = read_shazzam(answer)
    assert classifiers_to_launch(host) == []


def test_error_and_hostile_answers_are_sensor_errors_not_crashes() -> None:
    with pytest.raises(SensorError, match="denied by policy"):
        read_shazzam(samples.ERROR_ANSWER)
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><results><result ip_address="&a;"/></results>'
    )
    with pytest.raises(SensorError, match="not usable XML"):
        read_shazzam(bomb)
    with pytest.raises(SensorError, match="not <results>"):
        read_shazzam("<result/>")
    with pytest.raises(SensorError, match="ip_address"):
        read_shazzam('<results result_code="0"><result alive="true"/></results>')
    with pytest.raises(SensorError, match="port"):
        (host,) = read_shazzam(
            '<results><result alive="true" ip_address="127.0.0.1"><scanner portprobe="ssh" service="ssh" '
            'result="open" port="22,2222"/></result></results>'
        )
        classifiers_to_launch(host)


def test_snmp_classify_sensor_reads_sysobjectid_and_sysdescr_by_mib_name() -> None:
    found = read_snmp_classify(samples.snmp_answer())
    assert found.sys_object_id == samples.NET_SNMP_LINUX
    assert found.sys_descr == samples.SYS_DESCR
    assert found.sys_name == "probe-host"


def test_snmp_classify_sensor_needs_sysobjectid_and_the_snmp_tree() -> None:
    with pytest.raises(SensorError, match="sysObjectID"):
        read_snmp_classify(samples.snmp_answer(object_id=""))
    flat = '<results result_code="0"><result><varbind oid="1.3.6.1.2.1.1.2.0" value="x"/></result></results>'
    with pytest.raises(SensorError, match="<snmp>"):
        read_snmp_classify(flat)  # the older project layout is not what a real sensor reads


def test_ssh_classify_sensor_reads_uname_from_stdout() -> None:
    found = read_ssh_classify(samples.ssh_answer())
    assert (found.name, found.hostname) == ("Linux", "probe-host")
    assert found.output == samples.UNAME


def test_ssh_classify_sensor_accepts_the_older_output_element() -> None:
    older = f'<results probe_time="556" result_code="0"><result><output>{samples.UNAME}</output></result></results>'
    assert read_ssh_classify(older).name == "Linux"


def test_ssh_classify_sensor_refuses_failures_and_empty_output() -> None:
    with pytest.raises(SensorError, match="exited with 127"):
        read_ssh_classify(samples.ssh_answer(stdout="", exit_status=127))
    with pytest.raises(SensorError, match="no output"):
        read_ssh_classify(samples.ssh_answer(stdout="  \n"))
    with pytest.raises(SensorError, match="uname"):
        read_ssh_classify(samples.ssh_answer(stdout="Linux\n"))
    with pytest.raises(SensorError, match="denied"):
        read_ssh_classify(samples.ERROR_ANSWER)
