"""Hypothesis strategies for policy tests: rule sets and the jobs a real instance sends."""

from __future__ import annotations

import hashlib
import ipaddress

from hypothesis import strategies as st

from appliance.explain import explain_job_of
from appliance.probes.base import Job
from hardening.policy import AllowRule, PortRange
from hardening.scopes import CommandScope, PathScope, Scopes

ADDRESSES = ["10.0.0.1", "10.0.0.9", "10.0.1.1", "127.0.0.1"]


NETS = ["10.0.0.0/24", "10.0.0.0/29", "10.0.0.0/8", "127.0.0.0/8", "192.0.2.0/24"]


SCRIPTS = ["#!/bin/sh\nuname -a\n", "df -k\n", "#!/bin/bash\nrm -rf /\n"]


COMMANDS = ["uname -a", "id", "ip -o addr show dev {i:iface}", "cat {p:path}", "echo {n:int}",
            f"sha256:{hashlib.sha256(SCRIPTS[0].encode()).hexdigest()}",
            f"sha256:{hashlib.sha256(SCRIPTS[1].encode()).hexdigest()} {{d:path}}"]  # fmt: skip


SENT_COMMANDS = [
    "uname -a",
    "uname -a; id",
    "id",
    "ip -o addr show dev eth0",
    "ip -o addr show dev e;x",
    "cat /etc/passwd",
    "cat /etc/*",
    "echo 12",
    "echo -1",
    "uname -a ",
    # ${var} tokens, filled from the job's parameters (--param), and ${File:x} scripts (--script)
    "ip -o addr show dev ${iface}",
    "cat ${file}",
    "echo ${n}",
    "${File:probe}",
    "${File:probe} ${file}",
    "${File:probe} /tmp",
    "uname ${File:probe}",
    "echo ${missing}",
]


# Values the instance might send for the tokens above: clean ones and ones that try to break out.
PARAM_VALUES = {"iface": ["eth0", "e;x", "lo", "$(id)"], "file": ["/etc/os-release", "/etc/*", "a'b"],
                "n": ["12", "-1", "1 2"]}  # fmt: skip


OIDS = ["1.3.6.1.2.1.1", "1.3.6.1.2.1.2", "1.3.6.1.2.1.10", "1.3.6.1.4.1"]


SENT_OIDS = ["1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.10", "1.3.6.1.2.1", "1.3.6.1.2.1.2.2.1.2", "1.3.6.1.4.1.9.1"]


PATHS = ["/api/**", "/health", "/redfish/v1/**"]


SENT_PATHS = ["/api/x", "/api/../admin", "/health", "/health/x", "/redfish/v10", "/redfish/v1/%2e%2e/x", "/"]


METHODS = ["GET", "HEAD", "POST"]


@st.composite
def rules(draw: st.DrawFn) -> AllowRule:
    probes = draw(st.frozensets(st.sampled_from(["ssh", "snmp", "http"]), min_size=1))
    scopes = Scopes(
        commands=draw(st.none() | st.lists(st.sampled_from(COMMANDS), min_size=1, unique=True).map(
            lambda c: CommandScope.parse(tuple(c))
        )) if "ssh" in probes else None,
        oids=draw(st.none() | st.lists(st.sampled_from(OIDS), min_size=1, unique=True).map(
            lambda o: tuple(tuple(int(a) for a in x.split(".")) for x in o)
        )) if "snmp" in probes else None,
        methods=draw(st.none() | st.frozensets(st.sampled_from(METHODS), min_size=1)) if "http" in probes else None,
        paths=draw(st.none() | st.lists(st.sampled_from(PATHS), min_size=1, unique=True).map(
            lambda p: PathScope.parse(tuple(p))
        )) if "http" in probes else None,
    )  # fmt: skip
    return AllowRule(
        networks=(ipaddress.ip_network(draw(st.sampled_from(NETS))),),
        hosts=(),
        probes=probes,
        ports=(
            PortRange(
                *sorted(draw(st.tuples(st.sampled_from([22, 80, 161]), st.sampled_from([22, 80, 161]))))
            ),
        ),
        credentials=tuple(draw(st.lists(st.sampled_from(["a", "b"]), unique=True))),
        scopes=scopes,
    )


@st.composite
def jobs(draw: st.DrawFn) -> tuple[Job, int, str | None]:
    topic = draw(st.sampled_from(["SSHCommand", "SNMP", "RESTProbe"]))
    address = draw(st.sampled_from(ADDRESSES))
    port = draw(st.sampled_from([22, 80, 161]))
    credential = draw(st.none() | st.sampled_from(["a", "b"]))
    command, oids, url, method = None, [], None, None
    extra: list[tuple[str, str]] = []
    if topic == "SSHCommand":
        command = draw(st.sampled_from(SENT_COMMANDS))
        for name, values in PARAM_VALUES.items():
            if "${" + name + "}" in command:
                extra.append((name, draw(st.sampled_from(values))))
        if "${File:probe}" in command and draw(st.integers(0, 3)):  # now and then the script is missing
            extra.append(("probe", draw(st.sampled_from(SCRIPTS))))
    elif topic == "SNMP":
        oids = draw(st.lists(st.sampled_from(SENT_OIDS), min_size=1, max_size=3))
    else:
        url = f"http://{address}:{port}{draw(st.sampled_from(SENT_PATHS))}"
        method = draw(st.sampled_from(METHODS))
    if topic == "SSHCommand":
        # As the instance sends it: the command in 'name', its values and scripts as parameters.
        job = Job("0" * 32, topic, command or "", address, "mid.server.t", parameters=tuple(extra))
    else:
        job = explain_job_of(topic, address, command=command, oids=oids, url=url, method=method)
    params = dict(job.parameters)
    if topic != "RESTProbe":
        params["port"] = str(port)
    if credential:
        params["credential"] = credential
    return (
        Job(job.sys_id, topic, job.name, address, job.agent, parameters=tuple(params.items())),
        port,
        credential,
    )
