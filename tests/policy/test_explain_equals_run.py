"""``policy explain`` and ``run`` decide alike: Hypothesis generates rules and jobs; explain's verdict
(``appliance.explain.explain_job``, what the command prints) must equal what the dispatcher decides
when the job runs (the ask bound to the policy, every probe's ``checked_target``)."""

from __future__ import annotations

import asyncio
import ipaddress
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.asks import job_ask
from appliance.commands.policy import RESERVED_PARAMS
from appliance.dispatch import Dispatcher
from appliance.errors import TargetDeniedError
from appliance.explain import TOPIC_KINDS, explain_job, explain_job_of
from appliance.limits import Limits
from appliance.probes.base import Job, MemoryAudit, ProbeContext
from appliance.probes.targets import checked_target
from appliance.queue.records import OutputRecord
from hardening.policy import AllowRule, Policy, PortRange
from hardening.scopes import CommandScope, Scopes
from tests.probes.conftest import ProbeAudit
from tests.support.fakes import NoCredentials
from tests.support.policy_strategies import (
    COMMANDS,
    PARAM_VALUES,
    SCRIPTS,
    SENT_COMMANDS,
    jobs,
    rules,
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
    with pytest.raises(TargetDeniedError) as denied:
        asyncio.run(checked_target(ctx, probe="ssh", host="10.0.0.1", port=22, credential=None))
    assert verdicts[0].decision.reason in str(denied.value)
