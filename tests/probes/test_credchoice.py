"""Credentials the way real probes carry them: none, a credential_id, a credential_tag; against a real sshd."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from appliance.errors import ProbeError
from appliance.limits import Limits
from appliance.probes.affinity import CredentialAffinity
from appliance.probes.base import ProbeContext
from appliance.probes.ssh import SshProbe
from hardening.policy import CredentialMap, Policy
from tests.daemons import SshServer
from tests.probes.conftest import loopback_rule, make_ctx, make_job
from tests.support.ssh import creds, pinned_state, run

pytestmark = pytest.mark.daemons

SYS_ID = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"


def mapped_ctx(sshd: SshServer, tmp_path: Path, rule_aliases: tuple[str, ...], **kw: object) -> ProbeContext:
    policy = Policy([loopback_rule(("ssh",), ((sshd.port, sshd.port),), rule_aliases)])
    ctx = make_ctx(policy, creds(sshd), pinned_state(tmp_path, sshd))
    cmap = CredentialMap(ids={SYS_ID: ("badpw", "key")}, tags={"linux": ("badpw", "enckey", "pw")})
    return dataclasses.replace(ctx, credential_map=cmap, **kw)  # type: ignore[arg-type]


def attempts(ctx: ProbeContext) -> list[tuple[object, object, object]]:
    events = ctx.audit.events  # type: ignore[attr-defined]
    return [(f["alias"], f["outcome"], f["via"]) for e, f in events if e == "credential.attempt"]


def ssh_job(sshd: SshServer, **params: str) -> object:
    return make_job("SSHCommand", "id -un", "127.0.0.1", port=str(sshd.port), **params)


def test_credential_id_is_mapped_through_the_signed_map(sshd: SshServer, tmp_path: Path) -> None:
    ctx = mapped_ctx(sshd, tmp_path, ("pw", "badpw", "key"))
    el = run(SshProbe(), ssh_job(sshd, credential_id=SYS_ID.upper()), ctx)  # type: ignore[arg-type]
    assert el.findtext("stdout") == f"{sshd.user}\n"
    # Only the mapped aliases are tried, in the map's order; "pw" is in the rule but not mapped.
    assert attempts(ctx) == [("badpw", "rejected", "id"), ("key", "accepted", "id")]


def test_credential_tag_tries_only_aliases_the_rule_allows(sshd: SshServer, tmp_path: Path) -> None:
    # "enckey" is mapped by the tag but no rule lets the instance use it here: it is never looked up.
    ctx = mapped_ctx(sshd, tmp_path, ("pw", "badpw"))
    el = run(SshProbe(), ssh_job(sshd, credential_tag="linux"), ctx)  # type: ignore[arg-type]
    assert el.findtext("stdout") == f"{sshd.user}\n"
    assert attempts(ctx) == [("badpw", "rejected", "tag"), ("pw", "accepted", "tag")]
    assert "enckey" not in ctx.credentials.lookups  # type: ignore[attr-defined]


def test_an_unmapped_id_or_tag_is_refused_with_the_fix(sshd: SshServer, tmp_path: Path) -> None:
    ctx = mapped_ctx(sshd, tmp_path, ("pw",))
    with pytest.raises(ProbeError, match=r"credential_id 'f+' is not mapped.*\[credential_map.ids\]"):
        run(SshProbe(), ssh_job(sshd, credential_id="f" * 32), ctx)  # type: ignore[arg-type]
    with pytest.raises(ProbeError, match=r"\[credential_map.tags\]"):
        run(SshProbe(), ssh_job(sshd, credential_tag="windows"), ctx)  # type: ignore[arg-type]
    assert attempts(ctx) == []


def test_affinity_puts_the_credential_that_worked_first_and_survives_a_restart(
    sshd: SshServer, tmp_path: Path
) -> None:
    store = tmp_path / "affinity.json"
    ctx = mapped_ctx(sshd, tmp_path, ("badpw", "pw"), affinity=CredentialAffinity(store))
    run(SshProbe(), ssh_job(sshd), ctx)  # type: ignore[arg-type]
    assert attempts(ctx) == [("badpw", "rejected", "rule"), ("pw", "accepted", "rule")]
    # A new appliance process reads the affinity back: the working alias goes first, no failed login.
    again = mapped_ctx(sshd, tmp_path, ("badpw", "pw"), affinity=CredentialAffinity(store))
    run(SshProbe(), ssh_job(sshd), again)  # type: ignore[arg-type]
    assert attempts(again) == [("pw", "accepted", "rule")]


def test_a_damaged_affinity_file_is_ignored(tmp_path: Path) -> None:
    store = tmp_path / "affinity.json"
    store.write_bytes(b'{"format": 1, "entries": [["ssh", "10.0.0.1", "22", 5]]}')
    affinity = CredentialAffinity(store)
    assert len(affinity) == 0
    affinity.remember("ssh", "10.0.0.1", 22, "pw")
    assert CredentialAffinity(store).get("ssh", "10.0.0.1", 22) == "pw"


def test_affinity_is_bounded(tmp_path: Path) -> None:
    affinity = CredentialAffinity(tmp_path / "a.json", max_entries=3)
    for i in range(5):
        affinity.remember("snmp", f"10.0.0.{i}", 161, "c")
    assert len(affinity) == 3 and affinity.get("snmp", "10.0.0.0", 161) is None


def test_every_credential_refused_is_one_error_without_secrets(sshd: SshServer, tmp_path: Path) -> None:
    ctx = mapped_ctx(sshd, tmp_path, ("badpw",))
    with pytest.raises(ProbeError, match=r"refused every credential tried \(badpw;.*creds verify") as e:
        run(SshProbe(), ssh_job(sshd), ctx)  # type: ignore[arg-type]
    assert "not-the-password" not in str(e.value)


def test_attempts_are_capped(sshd: SshServer, tmp_path: Path) -> None:
    ctx = mapped_ctx(sshd, tmp_path, ("badpw", "pw"), limits=Limits(credential_attempts=1))
    with pytest.raises(ProbeError, match="refused every credential"):
        run(SshProbe(), ssh_job(sshd), ctx)  # type: ignore[arg-type]
    assert attempts(ctx) == [("badpw", "rejected", "rule")]


def test_a_rule_with_no_credentials_names_the_fix(sshd: SshServer, tmp_path: Path) -> None:
    ctx = mapped_ctx(sshd, tmp_path, ())
    with pytest.raises(ProbeError, match="lists 'credentials'; add the aliases"):
        run(SshProbe(), ssh_job(sshd), ctx)  # type: ignore[arg-type]


def test_the_audit_names_the_alias_that_worked_when_the_job_named_none(
    sshd: SshServer, tmp_path: Path
) -> None:
    import asyncio

    from appliance.dispatch import Dispatcher
    from appliance.payload import parse_xml
    from appliance.queue.records import OutputRecord

    ctx = mapped_ctx(sshd, tmp_path, ("badpw", "pw"))
    record = OutputRecord(
        sys_id="1" * 32, agent="mid.server.test", topic="SSHCommand", name="id -un", source="127.0.0.1",
        payload=f'<parameters><parameter name="port" value="{sshd.port}"/></parameters>', state="ready",
        agent_correlator="", priority="2", sys_created_on="",
    )  # fmt: skip
    dispatcher = Dispatcher({"SSHCommand": SshProbe()}, ctx)

    async def go() -> str:
        try:
            return (await dispatcher.handle(record)).payload
        finally:
            await dispatcher.aclose()

    payload = asyncio.run(go())
    assert parse_xml(payload, 10**6).findtext(".//stdout") == f"{sshd.user}\n"
    finished = [f for e, f in ctx.audit.events if e == "probe.finished"]  # type: ignore[attr-defined]
    assert [f["credential"] for f in finished] == ["pw"]
