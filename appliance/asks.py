"""What a job asks to do on its target, built from the job by the same parsers its probe uses.

The dispatcher binds this ask to the policy a probe sees (``Policy.scoped``), and ``policy explain``
builds its ask here too, so both judge a job by the same text.
"""

from __future__ import annotations

from appliance.probes.base import Job
from hardening.scopes import Ask

SSH_TOPICS = frozenset({"SSHCommand", "SSHCommandLong"})
HTTP_TOPICS = frozenset({"RESTProbe", "HTTPClient"})
SYS_DESCR_0 = (1, 3, 6, 1, 2, 1, 1, 1, 0)  # what Shazzam's SNMP scanner reads


def job_ask(job: Job) -> Ask:
    """The ask of ``job``; PayloadError when its parameters cannot be read (the probe would refuse too)."""
    if job.topic in SSH_TOPICS:
        from appliance.probes._sshcommand import scope_command

        return Ask(command=scope_command(job.name, dict(job.parameters)))
    if job.topic == "SNMP":
        from appliance.probes._snmpparams import parse_params

        spec = parse_params(job).spec
        return Ask(oids=tuple(oid for line in spec for oid in line.oids))
    if job.topic == "Shazzam":
        return Ask(oids=(SYS_DESCR_0,))
    if job.topic in HTTP_TOPICS:
        from appliance.probes.http import http_ask, parse_request

        request = parse_request(job)
        return http_ask(request.method, request.url)
    return Ask()
