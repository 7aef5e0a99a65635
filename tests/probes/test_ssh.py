"""The SSH probe against a real OpenSSH sshd on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from appliance.errors import ProbeError, TargetDeniedError
from appliance.limits import Limits
from appliance.probes._sshexec import CommandResult
from appliance.probes._sshguard import PreAuthGuard
from appliance.probes.ssh import SshProbe
from hardening.known_hosts import KnownHosts, parse_public_key_file
from hardening.policy import Policy
from tests.daemons import SshServer
from tests.probes.conftest import MemCredential, MemCredentials, listener, loopback_rule, make_ctx, make_job
from tests.support.ssh import creds, job, pinned_state, run

pytestmark = pytest.mark.daemons


def policy(server: SshServer, *aliases: str) -> Policy:
    return Policy(
        [loopback_rule(("ssh",), ((server.port, server.port),), aliases or ("pw", "badpw", "key", "enckey"))]
    )


@pytest.mark.parametrize("alias", ["pw", "key", "enckey"])
def test_command_runs_with_each_credential_type(sshd: SshServer, tmp_path: Path, alias: str) -> None:
    ctx = make_ctx(policy(sshd), creds(sshd), pinned_state(tmp_path, sshd))
    el = run(SshProbe(), job(sshd, "echo out; echo err >&2; id -un; exit 3", alias), ctx)
    assert el.tag == "result" and el.get("command") == "echo out; echo err >&2; id -un; exit 3"
    assert el.findtext("stdout") == f"out\n{sshd.user}\n"
    assert el.findtext("stderr") == "err\n"
    assert el.findtext("exit_status") == "3"
    assert el.get("truncated") is None


def test_no_pty_is_allocated(sshd: SshServer, tmp_path: Path) -> None:
    ctx = make_ctx(policy(sshd), creds(sshd), pinned_state(tmp_path, sshd))
    el = run(SshProbe(), job(sshd, "tty; true"), ctx)
    assert el.findtext("stdout") == "not a tty\n"


def test_wrong_password_is_an_error_without_the_secret(sshd: SshServer, tmp_path: Path) -> None:
    ctx = make_ctx(policy(sshd), creds(sshd), pinned_state(tmp_path, sshd))
    with pytest.raises(ProbeError, match=r"authentication as .* failed .*badpw") as e:
        run(SshProbe(), job(sshd, "true", "badpw"), ctx)
    assert "not-the-password" not in str(e.value)


def test_wrong_credential_type_is_refused(sshd: SshServer, tmp_path: Path) -> None:
    p = Policy([loopback_rule(("ssh",), ((sshd.port, sshd.port),), ("community",))])
    ctx = make_ctx(p, creds(sshd), pinned_state(tmp_path, sshd))
    with pytest.raises(ProbeError, match="not an SSH credential"):
        run(SshProbe(), job(sshd, "true", "community"), ctx)


def test_unknown_host_key_is_refused_with_pin_instructions(sshd: SshServer, tmp_path: Path) -> None:
    ctx = make_ctx(policy(sshd), creds(sshd), tmp_path)
    with pytest.raises(ProbeError, match=rf"not pinned.*midbox hosts pin 127.0.0.1:{sshd.port} PUBKEY_FILE"):
        run(SshProbe(), job(sshd, "true"), ctx)


def test_changed_host_key_is_refused(sshd: SshServer, tmp_path: Path) -> None:
    import subprocess

    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    state = tmp_path / "state"
    state.mkdir()
    KnownHosts(state / "known_hosts").pin(
        "127.0.0.1", sshd.port, parse_public_key_file(Path(f"{other}.pub").read_bytes(), source="pub")
    )
    ctx = make_ctx(policy(sshd), creds(sshd), state)
    with pytest.raises(ProbeError, match="HOST KEY CHANGED"):
        run(SshProbe(), job(sshd, "echo should-not-run"), ctx)
    # The host key refusal is audited, then the credential attempt it ended (as an error, not a rejection).
    (event, fields), (after, attempt) = ctx.audit.events[-2:]  # type: ignore[attr-defined]
    assert event == "ssh.hostkey.rejected" and fields["verdict"] == "changed"
    assert after == "credential.attempt" and attempt["outcome"] == "error"
    assert str(fields["fingerprint"]).startswith("SHA256:")


def test_key_pinned_under_the_name_is_found(sshd: SshServer, tmp_path: Path) -> None:
    # The job names the host by an address literal; a pin for the same address under [addr]:port works,
    # and so does a pin for the name a job uses (checked in the 'localhost' test below).
    ctx = make_ctx(policy(sshd), creds(sshd), pinned_state(tmp_path, sshd, host="127.0.0.1"))
    assert run(SshProbe(), job(sshd, "echo ok"), ctx).findtext("stdout") == "ok\n"


def test_command_timeout(sshd: SshServer, tmp_path: Path) -> None:
    ctx = make_ctx(policy(sshd), creds(sshd), pinned_state(tmp_path, sshd))
    start = time.monotonic()
    with pytest.raises(ProbeError, match="timed out"):
        run(SshProbe(), job(sshd, "sleep 30", command_timeout_ms="700"), ctx)
    assert time.monotonic() - start < 10


def test_oversized_output_is_cut_and_marked(sshd: SshServer, tmp_path: Path) -> None:
    limits = Limits(ssh_output_bytes=10_000)
    ctx = make_ctx(policy(sshd), creds(sshd), pinned_state(tmp_path, sshd), limits)
    start = time.monotonic()
    el = run(SshProbe(), job(sshd, "yes midbox"), ctx)
    assert time.monotonic() - start < 10
    assert el.get("truncated") == "true"
    out = el.find("stdout")
    assert out is not None and out.get("truncated") == "true"
    assert len(out.text or "") == 10_000
    assert (out.text or "").startswith("midbox\nmidbox\n")
    assert el.findtext("exit_status") == "-1"


def test_binary_output_becomes_valid_xml_text(sshd: SshServer, tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    from defusedxml.ElementTree import fromstring

    ctx = make_ctx(policy(sshd), creds(sshd), pinned_state(tmp_path, sshd))
    el = run(SshProbe(), job(sshd, r"printf 'a\000b\001c\377d'"), ctx)
    back = fromstring(ET.tostring(el))
    assert back.findtext("stdout") == "a\ufffdb\ufffdc\ufffdd"


def test_target_outside_the_allowlist_is_denied_before_connecting(sshd: SshServer, tmp_path: Path) -> None:
    c = creds(sshd)
    ctx = make_ctx(Policy([]), c, pinned_state(tmp_path, sshd))
    with pytest.raises(TargetDeniedError, match="deny by default"):
        run(SshProbe(), job(sshd, "true"), ctx)
    assert c.lookups == []  # the credential was never even read
    assert ctx.audit.events[0][0] == "target.denied"  # type: ignore[attr-defined]


def test_wrong_port_is_denied(sshd: SshServer, tmp_path: Path) -> None:
    p = Policy([loopback_rule(("ssh",), ((22, 22),), ("pw",))])
    ctx = make_ctx(p, creds(sshd), pinned_state(tmp_path, sshd))
    with pytest.raises(TargetDeniedError, match=f"not port {sshd.port}"):
        run(SshProbe(), job(sshd, "true"), ctx)


def test_credential_not_allowed_for_the_target_is_denied(sshd: SshServer, tmp_path: Path) -> None:
    c = creds(sshd)
    ctx = make_ctx(policy(sshd, "key"), c, pinned_state(tmp_path, sshd))
    with pytest.raises(TargetDeniedError, match="does not allow credential 'pw'"):
        run(SshProbe(), job(sshd, "true", "pw"), ctx)
    assert c.lookups == []


def test_hostname_resolving_outside_the_rules_is_denied(sshd: SshServer, tmp_path: Path) -> None:
    import ipaddress

    from hardening.policy import AllowRule, PortRange

    # A rule for 10.0.0.0/8 and for the name "localhost": the name resolves to loopback, which the rule
    # does not name with a loopback CIDR, so the probe must not go there.
    rule = AllowRule(
        networks=(ipaddress.ip_network("10.0.0.0/8"),),
        hosts=("localhost",),
        probes=frozenset({"ssh"}),
        ports=(PortRange(sshd.port, sshd.port),),
        credentials=("pw",),
    )
    ctx = make_ctx(Policy([rule]), creds(sshd), pinned_state(tmp_path, sshd, host="localhost"))
    with pytest.raises(TargetDeniedError, match="localhost"):
        run(SshProbe(), job(sshd, "true", host="localhost"), ctx)


def test_hostname_resolving_to_an_allowed_address_runs(sshd: SshServer, tmp_path: Path) -> None:
    # "localhost" may resolve to ::1 as well; the loopback-only rule names both, so every address passes.
    import ipaddress

    from hardening.policy import AllowRule, PortRange

    rule = AllowRule(
        networks=(ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128")),
        hosts=(),
        probes=frozenset({"ssh"}),
        ports=(PortRange(sshd.port, sshd.port),),
        credentials=("pw",),
    )
    ctx = make_ctx(Policy([rule]), creds(sshd), pinned_state(tmp_path, sshd, host="localhost"))
    el = run(SshProbe(), job(sshd, "echo via-name", host="localhost"), ctx)
    assert el.findtext("stdout") == "via-name\n"


def test_without_a_credential_parameter_the_rule_aliases_are_tried_in_order(
    sshd: SshServer, tmp_path: Path
) -> None:
    # A real probe names no alias: the rule's SSH aliases are tried in the rule's order ("community" is
    # skipped by type), the wrong password is refused by sshd, the next one works.
    ctx = make_ctx(policy(sshd, "community", "badpw", "pw", "key"), creds(sshd), pinned_state(tmp_path, sshd))
    el = run(SshProbe(), make_job("SSHCommand", "id -un", "127.0.0.1", port=str(sshd.port)), ctx)
    assert el.findtext("stdout") == f"{sshd.user}\n"
    attempts = [
        (f["alias"], f["outcome"], f["via"]) for e, f in ctx.audit.events if e == "credential.attempt"
    ]  # type: ignore[attr-defined]
    assert attempts == [("badpw", "rejected", "rule"), ("pw", "accepted", "rule")]
    assert ctx.affinity.get("ssh", "127.0.0.1", sshd.port) == "pw"


def test_several_commands_share_one_connection(sshd: SshServer, tmp_path: Path) -> None:
    ctx = make_ctx(policy(sshd), creds(sshd), pinned_state(tmp_path, sshd))
    probe = SshProbe()

    async def go() -> list[CommandResult]:
        try:
            return await probe.run_commands(job(sshd, "unused"), ctx, ["echo $PPID"] * 5)
        finally:
            await probe.aclose()

    results = asyncio.run(go())
    assert [r.exit_status for r in results] == [0] * 5
    # One connection: every command's parent is the same sshd session process.
    assert len({r.stdout for r in results}) == 1


def test_concurrent_jobs_respect_the_per_target_cap(sshd: SshServer, tmp_path: Path) -> None:
    ctx = make_ctx(policy(sshd), creds(sshd), pinned_state(tmp_path, sshd))
    probe = SshProbe(max_connections=8, per_target=2)

    async def go() -> list[ET.Element]:
        try:
            return await asyncio.gather(*(probe.run(job(sshd, f"echo {i}"), ctx) for i in range(8)))
        finally:
            await probe.aclose()

    results = asyncio.run(go())
    assert [r.findtext("stdout") for r in results] == [f"{i}\n" for i in range(8)]


def test_cancel_aborts_a_running_command(sshd: SshServer, tmp_path: Path) -> None:
    ctx = make_ctx(policy(sshd), creds(sshd), pinned_state(tmp_path, sshd))
    probe = SshProbe()

    async def go() -> ET.Element:
        # A command that would run for 120 s: cancelled, the job ends as cancelled well before it
        # could have finished, and the probe runs the next command.
        task = asyncio.create_task(probe.run(job(sshd, "sleep 120"), ctx))
        await asyncio.sleep(1.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 60)
        try:
            return await probe.run(job(sshd, "echo next"), ctx)
        finally:
            await probe.aclose()

    assert asyncio.run(go()).findtext("stdout") == "next\n"


def test_the_per_target_slot_covers_the_login_not_the_commands(sshd: SshServer, tmp_path: Path) -> None:
    # MaxStartups counts unauthenticated connections only: once logged in, a session gives its
    # start-up slot back, so three 2 s commands with one slot overlap instead of taking 6 s in a row.
    ctx = make_ctx(policy(sshd), creds(sshd), pinned_state(tmp_path, sshd))
    probe = SshProbe(max_connections=4, per_target=1)

    async def go() -> list[ET.Element]:
        try:
            return await asyncio.gather(*(probe.run(job(sshd, f"sleep 2; echo {i}"), ctx) for i in range(3)))
        finally:
            await probe.aclose()

    start = time.monotonic()
    results = asyncio.run(go())
    assert [r.findtext("stdout") for r in results] == ["0\n", "1\n", "2\n"]
    assert time.monotonic() - start < 5.0


def test_unauthenticated_connections_to_one_target_stay_under_the_cap(tmp_path: Path) -> None:
    # A server that accepts and never sends its banner: every connection stays before the login until
    # its 0.4 s banner timeout, so six jobs with two start-up slots take three rounds of it.
    accepted: list[socket.socket] = []

    def serve(sock: socket.socket) -> None:
        while True:
            try:
                accepted.append(sock.accept()[0])
            except OSError:
                return

    with listener() as sock:
        threading.Thread(target=serve, args=(sock,), daemon=True).start()
        port = sock.getsockname()[1]
        ctx = make_ctx(
            Policy([loopback_rule(("ssh",), ((port, port),), ("pw",))]),
            MemCredentials(MemCredential("pw", "ssh-password", "someone", (b"secret",))),
            tmp_path,
        )
        probe = SshProbe(max_connections=8, per_target=2, connect_timeout_s=0.4)

        async def go() -> list[BaseException | ET.Element]:
            jobs = [make_job("SSHCommand", "true", "127.0.0.1", port=str(port), credential="pw")] * 6
            try:
                return await asyncio.gather(*(probe.run(j, ctx) for j in jobs), return_exceptions=True)
            finally:
                await probe.aclose()

        start = time.monotonic()
        results = asyncio.run(go())
        elapsed = time.monotonic() - start
    for conn in accepted:
        conn.close()
    assert all(isinstance(r, ProbeError) and "banner" in str(r) for r in results), results
    assert len(accepted) == 6
    assert elapsed >= 3 * 0.4 - 0.1, elapsed


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux's")
def test_every_read_asks_for_an_immediate_ack() -> None:
    # sshd's Nagle holds its next small packet until we ACK; a delayed ACK cost 40 ms per channel open.
    calls: list[tuple[int, int, int]] = []

    class Spy(socket.socket):
        def setsockopt(self, level: int, option: int, value: int) -> None:  # type: ignore[override]
            calls.append((level, option, value))
            super().setsockopt(level, option, value)

    with listener() as server:
        client = Spy(socket.AF_INET, socket.SOCK_STREAM)
        client.connect(server.getsockname())
        peer, _ = server.accept()
        with client, peer:
            guard = PreAuthGuard(client, 1024, 4096, "test")
            for payload in (b"SSH-2.0-x\r\n", b"after"):
                peer.sendall(payload)
                assert guard.recv(64) == payload
                guard.authenticated()
    assert calls == [(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)] * 2
