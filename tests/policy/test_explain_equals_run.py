"""``policy explain`` and ``run`` decide alike: Hypothesis generates rules and jobs; explain's verdict
(``appliance.explain.explain_job``, what the command prints) must equal what the dispatcher decides
when the job runs (the ask bound to the policy, every probe's ``checked_target``)."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.asks import job_ask
from appliance.commands.policy import RESERVED_PARAMS
from appliance.dispatch import Dispatcher
from appliance.errors import TargetDenied
from appliance.explain import TOPIC_KINDS, explain_job, explain_job_of
from appliance.limits import Limits
from appliance.probes.base import Job, MemoryAudit, NoCredentials, ProbeContext
from appliance.probes.targets import checked_target
from appliance.queue.records import OutputRecord
from hardening.policy import AllowRule, Policy, PortRange
from hardening.scopes import CommandScope, PathScope, Scopes
from tests.probes.conftest import ProbeAudit

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


class PolicyOnlyProbe:
    """Runs a job up to its target check (what every real probe does first), then stops."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def run(self, job: Job, ctx: ProbeContext) -> ET.Element:
        port = int(job.param("port") or 0) or int((job.param("url") or ":0").rsplit(":", 1)[1].split("/")[0])
        _, rule = await checked_target(
            ctx, probe=self.kind, host=job.source, port=port, credential=job.param("credential")
        )
        return ET.Element("result", rule=str(ctx.policy.rules.index(rule) + 1 if rule else 0))

    async def aclose(self) -> None:
        return None


def run_decides(policy: Policy, job: Job) -> tuple[bool, int | None]:
    from xml.sax.saxutils import quoteattr

    body = "".join(f"<parameter name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in job.parameters)
    record = OutputRecord(
        sys_id="1" * 32, agent="mid.server.t", topic=job.topic, name=job.name, source=job.source,
        payload=f"<parameters>{body}</parameters>", state="ready", agent_correlator="", priority="2",
        sys_created_on="",
    )  # fmt: skip
    ctx = ProbeContext(policy=policy, credentials=NoCredentials(), audit=MemoryAudit(), limits=Limits())
    dispatcher = Dispatcher({job.topic: PolicyOnlyProbe(TOPIC_KINDS[job.topic])}, ctx)
    outcome = asyncio.run(dispatcher.handle(record))
    if outcome.error:
        return False, None
    from appliance.payload import parse_xml

    found = parse_xml(outcome.payload, 10**6).find(".//result")
    assert found is not None
    return True, int(found.get("rule") or 0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rules(), max_size=4), jobs())
def test_explain_and_run_decide_alike(
    rule_list: list[AllowRule], job_port: tuple[Job, int, str | None]
) -> None:
    assert_alike(rule_list, *job_port)


def assert_alike(rule_list: list[AllowRule], job: Job, port: int, credential: str | None) -> None:
    policy = Policy(rule_list)
    explained = job
    if job.topic == "SSHCommand":
        # What 'policy explain --command C --param N=V --script N=FILE' builds from the same pieces.
        flags = [(k, v) for k, v in job.parameters if k not in RESERVED_PARAMS]
        explained = explain_job_of(
            job.topic, job.source, command=job.name, oids=[], url=None, method=None, params=flags
        )
    _, verdicts = explain_job(
        policy,
        explained,
        addresses=[ipaddress.ip_address(job.source)],
        port=port,
        credential=credential,
        hostname=None,
    )
    decision = verdicts[0].decision
    allowed, rule = run_decides(policy, job)
    assert (decision.allowed, decision.rule if decision.allowed else None) == (allowed, rule)
    # The per-rule verdicts agree with the deciding one: the first allowing rule decides.
    first = next((v.rule for v in verdicts[0].rules if v.allowed), None)
    assert first == (decision.rule if decision.allowed else None)


def _with_values(command: str) -> list[tuple[tuple[str, str], ...]]:
    """Every combination of the values (and scripts) a command's tokens can take, the script left out too."""
    combos: list[tuple[tuple[str, str], ...]] = [()]
    for name, values in [*PARAM_VALUES.items(), ("probe", SCRIPTS)]:
        token = "${File:probe}" if name == "probe" else "${" + name + "}"
        if token in command:
            combos = [(*c, (name, v)) for c in combos for v in values] + (combos if name == "probe" else [])
    return combos


@pytest.mark.parametrize("command", [c for c in SENT_COMMANDS if "${" in c])
def test_commands_with_values_and_scripts_decide_alike(command: str) -> None:
    # Hypothesis rarely lines a ${...} command up with a rule that scopes it; here every one meets one.
    scoped = AllowRule(
        networks=(ipaddress.ip_network("10.0.0.0/8"),), hosts=(), probes=frozenset({"ssh"}),
        ports=(PortRange(22, 22),), credentials=(), scopes=Scopes(commands=CommandScope.parse(tuple(COMMANDS))),
    )  # fmt: skip
    decided = set()
    for values in _with_values(command):
        job = Job(
            "0" * 32, "SSHCommand", command, "10.0.0.1", "mid.server.t", parameters=(*values, ("port", "22"))
        )
        assert_alike([scoped], job, 22, None)
        decided.add(run_decides(Policy([scoped]), job)[0])
    if command in ("ip -o addr show dev ${iface}", "${File:probe}", "${File:probe} ${file}", "echo ${n}"):
        assert decided == {True, False}  # some values are inside the scope, others not


def test_a_scope_refusal_is_named_by_both() -> None:
    rule = AllowRule(
        networks=(ipaddress.ip_network("10.0.0.0/8"),), hosts=(), probes=frozenset({"ssh"}),
        ports=(PortRange(22, 22),), credentials=(), scopes=Scopes(commands=CommandScope.parse(("id",))), line=9,
    )  # fmt: skip
    job = Job("0" * 32, "SSHCommand", "id; reboot", "10.0.0.1", "a", parameters=(("port", "22"),))
    _, verdicts = explain_job(Policy([rule]), job, addresses=[ipaddress.ip_address("10.0.0.1")], port=22,
                              credential=None, hostname=None)  # fmt: skip
    assert "rule 1 (line 9)" in verdicts[0].decision.reason
    ctx = ProbeContext(
        policy=Policy([rule]).scoped(job_ask(job)),
        credentials=NoCredentials(),
        audit=ProbeAudit(),
        limits=Limits(),
    )
    with pytest.raises(TargetDenied) as denied:
        asyncio.run(checked_target(ctx, probe="ssh", host="10.0.0.1", port=22, credential=None))
    assert verdicts[0].decision.reason in str(denied.value)
