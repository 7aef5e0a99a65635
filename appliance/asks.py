"""What a job asks to do on its target, built from the job by the same parsers its probe uses.

The dispatcher binds this ask to the policy a probe sees (``Policy.scoped``), and ``policy explain``
builds its ask here too, so both judge a job by the same text.
"""

from __future__ import annotations

from appliance.limits import ASK_CACHE_ENTRIES, ASK_CACHE_PAYLOAD_CHARS
from appliance.probes.base import Job
from hardening.scopes import Ask

SSH_TOPICS = frozenset({"SSHCommand", "SSHCommandLong"})
HTTP_TOPICS = frozenset({"RESTProbe", "HTTPClient"})
SYS_DESCR_0 = (1, 3, 6, 1, 2, 1, 1, 1, 0)  # what Shazzam's SNMP scanner reads


def job_ask(job: Job) -> Ask:
    """The ask of ``job``; PayloadError when its parameters cannot be read (the probe would refuse too)."""
    return prepared(job)[1]


def prepared(job: Job) -> tuple[Job, Ask]:
    """``job`` carrying its parsed parameters (so its probe does not parse them again), and its ask."""
    parsed, ask = _parse(job)
    return _with(job, parsed), ask


def _with(job: Job, parsed: object) -> Job:
    # Not dataclasses.replace: that costs microseconds per job, more than the whole policy check.
    if parsed is None:
        return job
    j = job
    return Job(
        j.sys_id, j.topic, j.name, j.source, j.agent, j.agent_correlator, j.priority, j.parameters, parsed
    )


class AskCache:
    """The parsed parameters and ask of recent payloads, so a job is parsed once and its twins not at all.

    Discovery sends one payload to many targets; what the parse yields depends on the topic, the name
    and the parameters only (the target is judged by the policy), and the parsed forms are immutable.
    One per dispatcher, bounded; big payloads are parsed every time rather than held.
    """

    def __init__(self, entries: int = ASK_CACHE_ENTRIES, max_chars: int = ASK_CACHE_PAYLOAD_CHARS) -> None:
        self._entries = entries
        self._max_chars = max_chars
        self._cache: dict[tuple[str, str, tuple[tuple[str, str], ...]], tuple[object, Ask]] = {}

    def prepared(self, job: Job) -> tuple[Job, Ask]:
        if len(job.name) + sum(len(k) + len(v) for k, v in job.parameters) > self._max_chars:
            return prepared(job)
        key = (job.topic, job.name, job.parameters)
        hit = self._cache.get(key)
        if hit is None:
            hit = _parse(job)  # a PayloadError is not cached: the probe refuses the job either way
            if len(self._cache) >= self._entries:
                self._cache.clear()
            self._cache[key] = hit
        parsed, ask = hit
        return _with(job, parsed), ask


def _parse(job: Job) -> tuple[object, Ask]:
    """The parameters as ``job``'s probe reads them (or None), and its ask."""
    if job.topic in SSH_TOPICS:
        from appliance.probes._sshcommand import scope_command

        return None, Ask(command=scope_command(job.name, dict(job.parameters)))
    if job.topic == "SNMP":
        from appliance.probes.snmp.params import parse_params

        params = parse_params(job)
        return params, Ask(oids=tuple(oid for line in params.spec for oid in line.oids))
    if job.topic == "Shazzam":
        return None, Ask(oids=(SYS_DESCR_0,))
    if job.topic in HTTP_TOPICS:
        from appliance.probes.http import http_ask, parse_request

        request = parse_request(job)
        return request, http_ask(request.method, request.url)
    return None, Ask()
