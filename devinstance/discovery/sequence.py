"""Run classic horizontal Discovery against one appliance: Shazzam, then the classifiers it calls for.

As a real instance does (``ip-address-scanning-classification``): the scan phase sends one Shazzam
output; its sensor reads the answer per address and launches classifiers in port-probe priority;
each classifier's sensor reads its answer. Here the sensors run in this process and the outputs go
through the development instance's store, so the appliance sees exactly what a real instance queues.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from devinstance.discovery.sensors import (
    Launch,
    SensorError,
    ShazzamHost,
    classifiers_to_launch,
    read_shazzam,
    read_snmp_classify,
    read_ssh_classify,
)
from devinstance.discovery.shapes import (
    SNMP_CLASSIFY,
    UNIX_CLASSIFY,
    Output,
    PortProbe,
    ShazzamTuning,
    default_port_probes,
    shazzam_output,
    snmp_classify_output,
    ssh_classify_output,
)
from devinstance.store import Store


@dataclass(frozen=True)
class CredentialChoice:
    """What the instance may add to a classifier's output: a credential sys_id or a tag (or neither)."""

    credential_id: str | None = None
    credential_tag: str | None = None


@dataclass(frozen=True)
class DiscoveryPlan:
    agent: str
    ranges: tuple[str, ...]
    port_probes: tuple[PortProbe, ...] = field(default_factory=default_port_probes)
    tuning: ShazzamTuning = field(default_factory=ShazzamTuning)
    ssh: CredentialChoice = field(default_factory=CredentialChoice)
    snmp: CredentialChoice = field(default_factory=CredentialChoice)
    every_classifier: bool = True  # False: stop at the first that classifies, as a real instance does
    timeout_s: float = 60.0


@dataclass(frozen=True)
class StepResult:
    label: str  # Shazzam, UNIX - Classify, SNMP - Classify
    source: str
    sys_id: str
    ok: bool
    detail: str  # what the sensor found, or why it could not use the answer


@dataclass(frozen=True)
class DiscoveryReport:
    steps: tuple[StepResult, ...]
    hosts: tuple[ShazzamHost, ...]

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)

    def lines(self) -> list[str]:
        return [f"{'ok   ' if s.ok else 'FAIL '} {s.label:<16} {s.source:<15} {s.detail}" for s in self.steps]


def classifier_output(launch: Launch, plan: DiscoveryPlan) -> Output:
    """The output a launch decision turns into, with the credential hints the plan carries."""
    if launch.classifier == UNIX_CLASSIFY:
        return ssh_classify_output(
            launch.address,
            port=launch.port,
            credential_id=plan.ssh.credential_id,
            credential_tag=plan.ssh.credential_tag,
        )
    if launch.classifier == SNMP_CLASSIFY:
        return snmp_classify_output(
            launch.address,
            port=launch.port,
            credential_id=plan.snmp.credential_id,
            credential_tag=plan.snmp.credential_tag,
        )
    raise ValueError(f"no classifier output for {launch.classifier!r}")


def discover(
    store: Store, plan: DiscoveryPlan, progress: Callable[[str], None] = lambda _: None
) -> DiscoveryReport:
    """Shazzam, then per host the classifiers its sensor launches; each answer read by its sensor."""
    deadline = time.monotonic() + plan.timeout_s
    scan = shazzam_output(plan.ranges, plan.port_probes, plan.tuning)
    progress(f"Shazzam over {scan.source}")
    sys_id, row = _ask(store, plan.agent, scan, deadline)
    try:
        hosts = read_shazzam(_answer(row))
    except SensorError as e:
        return DiscoveryReport((StepResult("Shazzam", scan.source, sys_id, False, str(e)),), ())
    alive = [h for h in hosts if h.alive]
    summary = "; ".join(
        f"{h.ip_address}: " + ",".join(f"{s.portprobe}={s.result}" for s in h.scanners) for h in alive
    )
    steps = [StepResult("Shazzam", scan.source, sys_id, bool(alive), summary or "no live address found")]
    for host in alive:
        for launch in classifiers_to_launch(host):
            output = classifier_output(launch, plan)
            progress(f"{launch.classifier} on {launch.address}:{launch.port}")
            step = _classify(store, plan.agent, launch, output, deadline)
            steps.append(step)
            if step.ok and not plan.every_classifier:
                break
    return DiscoveryReport(tuple(steps), hosts)


def _classify(store: Store, agent: str, launch: Launch, output: Output, deadline: float) -> StepResult:
    sys_id, row = _ask(store, agent, output, deadline)
    try:
        payload = _answer(row)
        if launch.classifier == UNIX_CLASSIFY:
            unix = read_ssh_classify(payload)
            detail = f"{unix.name} ({unix.output[:70]})"
        else:
            snmp = read_snmp_classify(payload)
            detail = f"sysObjectID {snmp.sys_object_id} ({snmp.sys_descr[:60]})"
    except SensorError as e:
        return StepResult(launch.classifier, launch.address, sys_id, False, str(e))
    return StepResult(launch.classifier, launch.address, sys_id, True, detail)


def _ask(store: Store, agent: str, output: Output, deadline: float) -> tuple[str, dict[str, str] | None]:
    (sys_id,) = store.enqueue([output.record(agent, priority="2")])
    while True:
        rows = store.query("ecc_queue", f"queue=input^response_to={sys_id}", limit=1)
        if rows or time.monotonic() > deadline:
            return sys_id, rows[0] if rows else None
        time.sleep(0.2)


def _answer(row: dict[str, str] | None) -> str:
    if row is None:
        raise SensorError("no answer in time: is the appliance running and polling this instance?")
    if row.get("error_string"):
        raise SensorError(f"the appliance answered with an error: {row['error_string'][:200]}")
    return row["payload"]
