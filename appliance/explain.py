"""The decision ``policy explain`` shows, computed the way ``run`` computes it.

``run`` binds each job's ask (``appliance.asks.job_ask``) to the policy and every probe checks its
target through ``Policy.check``; explain builds a job from its flags, the same ask, and calls the same
``Policy.check`` (the deciding verdict) and ``Policy.verdicts`` (what every matching rule says; both
are the one per-rule decision, ``Policy._judge``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from appliance.asks import job_ask
from appliance.probes.base import Job
from hardening.policy import Decision, IPAddress, Policy, Verdict
from hardening.scopes import Ask

# ECC topic -> probe kind of the allowlist, and the port that kind uses unless told otherwise.
TOPIC_KINDS = {
    "SSHCommand": "ssh",
    "SSHCommandLong": "ssh",
    "SNMP": "snmp",
    "RESTProbe": "http",
    "HTTPClient": "http",
    "Shazzam": "tcp",
}


@dataclass(frozen=True)
class AddressVerdict:
    address: IPAddress
    decision: Decision
    rules: tuple[Verdict, ...]


def explain_job(
    policy: Policy,
    job: Job,
    *,
    addresses: list[IPAddress],
    port: int,
    credential: str | None,
    hostname: str | None,
) -> tuple[Ask, list[AddressVerdict]]:
    """The job's ask and, per address, the deciding verdict and every matching rule's verdict."""
    # Without the flag that names what the job does, the ask names nothing: a scoped rule refuses.
    given = {
        "ssh": bool(job.name),
        "snmp": job.param("oid_spec_list") is not None,
        "http": bool(job.param("url")),
    }
    ask = job_ask(job) if given.get(TOPIC_KINDS[job.topic], True) else Ask()
    bound = policy.scoped(ask)
    kind = TOPIC_KINDS[job.topic]
    out = []
    for address in addresses:
        kw = {"probe": kind, "address": address, "port": port, "credential": credential, "hostname": hostname}
        out.append(AddressVerdict(address, bound.check(**kw), bound.verdicts(**kw)))  # type: ignore[arg-type]
    return ask, out


def explain_job_of(
    topic: str,
    target: str,
    *,
    command: str | None,
    oids: list[str],
    url: str | None,
    method: str | None,
    params: Sequence[tuple[str, str]] = (),
) -> Job:
    """The job ``run`` would get for these flags (its ask is what the scopes judge).

    ``params`` are the job's own parameters as the instance sends them: the values of the command's
    ``${var}`` tokens and the bodies of its ``${File:name}`` scripts (``--param``, ``--script``).
    """
    params = list(params)
    if oids:
        params.append(("oid_spec_list", "\n".join(f"walk {o}" for o in oids)))
    if url:
        params.append(("url", url))
    if method:
        params.append(("http_method", method))
    return Job(
        sys_id="0" * 32,
        topic=topic,
        name=command or "",
        source=target,
        agent="mid.server.explain",
        parameters=tuple(params),
    )
