"""What the demo asks the appliance, and what each answer must show to count as right.

One ``Expect`` per job: the topic and parameters the instance queues, whether the appliance should
answer with a result or an error, and a piece of text that answer must contain (a denied target
must say "denied", not merely fail).
"""

from __future__ import annotations

from dataclasses import dataclass

from devinstance.demo_targets import closed_port


@dataclass(frozen=True)
class Expect:
    label: str
    topic: str
    source: str
    params: dict[str, str]
    ok: bool
    shows: str  # a piece of text the result (payload or error) must contain


def demo_jobs(web_port: int, snmp_port: int | None) -> list[Expect]:
    web = f"http://127.0.0.1:{web_port}"
    jobs = [
        Expect("heartbeat", "HeartbeatProbe", "", {}, True, "mid_operational_state"),
        Expect(
            "HTTP GET, allowed",
            "RESTProbe",
            "127.0.0.1",
            {"url": f"{web}/"},
            True,
            "hello from a local target",
        ),
        Expect(
            "HTTP with a stored credential",
            "RESTProbe",
            "127.0.0.1",
            {"url": f"{web}/private", "credential": "demo-web"},
            True,
            "welcome, demo",
        ),
        Expect(
            "HTTP to the cloud metadata address",
            "RESTProbe",
            "169.254.169.254",
            {"url": "http://169.254.169.254/latest/meta-data/"},
            False,
            "denied",
        ),
        Expect(
            "TCP scan (discovery's first phase)",
            "Shazzam",
            "127.0.0.1",
            {"ranges": "127.0.0.1", "ports": f"{web_port},{closed_port()}"},
            True,
            "open",
        ),
        Expect(
            "a topic this appliance refuses", "Command", "127.0.0.1", {"name": "id"}, False, "not permitted"
        ),
        Expect("a topic nobody knows", "NoSuchProbe", "", {}, False, "not permitted"),
    ]
    if snmp_port:
        jobs.append(
            Expect(
                "SNMPv3 get (authPriv, stored USM keys)",
                "SNMP",
                "127.0.0.1",
                {
                    "oid_spec_list": "get 1.3.6.1.2.1.1.6.0",
                    "version": "3",
                    "port": str(snmp_port),
                    "credential": "demo-snmp",
                },
                True,
                "midbox demo rack",
            )
        )
    return jobs


def report(jobs: list[Expect], ids: list[str], answers: dict[str, dict[str, str]]) -> int:
    failures = 0
    for job, sys_id in zip(jobs, ids, strict=True):
        row = answers.get(sys_id)
        if row is None:
            failures += 1
            print(f"    MISSING  {job.label}")
            continue
        error = row["error_string"]
        seen = error or row["payload"]
        good = (not error) == job.ok and job.shows in seen
        failures += not good
        verdict = ("ok   " if job.ok else "error") if good else "WRONG"
        detail = error or _summary(row["payload"])
        print(f"    {verdict}  {job.label:<40} {detail[:90]}")
    return failures


def _summary(payload: str) -> str:
    return " ".join(payload.split())[:200]
