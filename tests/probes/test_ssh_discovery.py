"""SSHCommand jobs as Discovery writes them, against a real OpenSSH sshd on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pwd
import shutil
from pathlib import Path

import pytest

from appliance.errors import PayloadError, ProbeError, TargetDeniedError
from appliance.probes._sshcommand import DEFAULT_PATH
from appliance.probes.base import ProbeContext
from appliance.probes.ssh import SshProbe
from hardening.known_hosts import KnownHosts, parse_public_key_file
from hardening.policy import AllowRule, IPAddress, Policy
from tests.daemons import SshServer, run_sshd_new_host_key
from tests.probes.conftest import loopback_rule, make_ctx
from tests.support.ssh import creds, job, pinned_state, run

pytestmark = pytest.mark.daemons


def rule(*ports: int, sudo: bool = False, host_keys: str = "pinned") -> AllowRule:
    base = loopback_rule(("ssh",), tuple((p, p) for p in ports), ("pw", "key"))
    return dataclasses.replace(base, sudo=sudo, host_keys=host_keys)


def ctx_for(server: SshServer, state: Path, r: AllowRule | None = None) -> ProbeContext:
    return make_ctx(Policy([r or rule(server.port)]), creds(server), state)


def events(ctx: ProbeContext, name: str) -> list[dict[str, object]]:
    return [f for e, f in ctx.audit.events if e == name]  # type: ignore[attr-defined]


def owned_files(user: str) -> set[tuple[str, int]]:
    """Every file of ``user`` in its home and the usual scratch directories, with its mtime."""
    entry = pwd.getpwnam(user)
    found: set[tuple[str, int]] = set()
    for top in (entry.pw_dir, "/tmp", "/var/tmp", "/dev/shm"):  # nosec B108 - scanned, not written
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                path = os.path.join(root, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue  # another test's file came and went
                if st.st_uid == entry.pw_uid:
                    found.add((path, st.st_mtime_ns))
            if root != entry.pw_dir and top != entry.pw_dir:
                dirs[:] = [d for d in dirs if os.lstat(os.path.join(root, d)).st_uid == entry.pw_uid]
    return found


def test_file_script_runs_from_stdin_and_leaves_nothing_on_the_target(
    sshd: SshServer, tmp_path: Path
) -> None:
    script = (
        "#!/bin/sh\n"
        "# a Discovery-style script: reads its arguments, must not see its own text on stdin\n"
        'echo "args=$# first=$1 second=$2"\n'
        'echo "stdin=[$(cat)]"\n'
        "uname -s\n"
    )
    before = owned_files(sshd.user)
    ctx = ctx_for(sshd, pinned_state(tmp_path, sshd))
    j = job(sshd, "${File:classify.sh} -x ${where}", **{"classify.sh": script, "where": "two words"})
    el = run(SshProbe(), j, ctx)
    assert el.get("command") == "${File:classify.sh} -x ${where}"
    assert el.findtext("stdout") == "args=3 first=-x second=two\nstdin=[]\nLinux\n"
    assert el.findtext("stderr") == "" and el.findtext("exit_status") == "0"
    assert owned_files(sshd.user) == before  # no script file, no temp file, nothing touched


def test_variables_are_substituted_as_data(sshd: SshServer, tmp_path: Path) -> None:
    home = Path(pwd.getpwnam(sshd.user).pw_dir)
    ctx = ctx_for(sshd, pinned_state(tmp_path, sshd))
    hostile = "x'; touch PWNED; echo '$(touch PWNED)"
    el = run(SshProbe(), job(sshd, "printf '%s|' \"${v}\" '${v}'", v=hostile), ctx)
    assert el.findtext("stdout") == f"{hostile}|{hostile}|"
    assert not (home / "PWNED").exists()


def test_a_missing_variable_fails_before_any_connection(sshd: SshServer, tmp_path: Path) -> None:
    c = creds(sshd)
    ctx = make_ctx(Policy([rule(sshd.port)]), c, pinned_state(tmp_path, sshd))
    with pytest.raises(PayloadError, match=r"\$\{install_dir\}.*no parameter 'install_dir'"):
        run(SshProbe(), job(sshd, "ls ${install_dir}"), ctx)
    assert c.lookups == [] and events(ctx, "probe.connect") == []


def test_path_default_override_and_off(sshd: SshServer, tmp_path: Path) -> None:
    ctx = ctx_for(sshd, pinned_state(tmp_path, sshd))
    default = run(SshProbe(), job(sshd, "echo $PATH"), ctx).findtext("stdout") or ""
    assert default.startswith(DEFAULT_PATH + ":")  # then the login PATH, as the MID appends it
    replaced = run(SshProbe(), job(sshd, "echo $PATH", path_override="replace:/opt/x/bin:/bin"), ctx)
    assert replaced.findtext("stdout") == "/opt/x/bin:/bin\n"
    off = run(SshProbe(), job(sshd, "echo $PATH", set_path="false"), ctx).findtext("stdout") or ""
    assert not off.startswith(DEFAULT_PATH) and off.strip()


def test_must_sudo_is_refused_on_a_rule_without_sudo(sshd: SshServer, tmp_path: Path) -> None:
    c = creds(sshd)
    ctx = make_ctx(Policy([rule(sshd.port)]), c, pinned_state(tmp_path, sshd))
    with pytest.raises(
        TargetDeniedError, match=r"rule 1, .* does not permit sudo; add 'sudo = true' to that rule"
    ):
        run(SshProbe(), job(sshd, "id -u", must_sudo="true"), ctx)
    assert events(ctx, "ssh.sudo.refused") == [
        {"job": "0" * 32, "topic": "test", "target": "127.0.0.1", "port": sshd.port, "rule": 1}
    ]
    assert c.lookups == [] and events(ctx, "probe.connect") == []


def test_must_sudo_on_a_sudo_rule_goes_through_sudo_without_leaking_the_password(
    sshd: SshServer, tmp_path: Path
) -> None:
    # The fixture's user cannot sudo (sudo is not even installed on the test host; if it is, the user is
    # not in sudoers): the command must fail in sudo, and the password on stdin must appear nowhere.
    ctx = ctx_for(sshd, pinned_state(tmp_path, sshd), rule(sshd.port, sudo=True))
    el = run(SshProbe(), job(sshd, "cat; id -u", must_sudo="true"), ctx)
    assert el.findtext("exit_status") != "0"
    assert "sudo" in (el.findtext("stderr") or "")
    assert sshd.password not in (el.findtext("stdout") or "") + (el.findtext("stderr") or "")
    if shutil.which("sudo") is None:
        assert el.findtext("exit_status") == "127"  # the login shell ran "sudo ...": not found


def test_a_device_without_a_posix_shell_needs_allow_unsupported_shells(
    sshd: SshServer, tmp_path: Path
) -> None:
    router = ('ForceCommand printf "%% Invalid input detected at marker.\\n"',)
    with run_sshd_new_host_key(sshd, tmp_path / "router", router) as dev:
        ctx = ctx_for(dev, pinned_state(tmp_path, dev))
        with pytest.raises(
            ProbeError, match=r"did not answer as a POSIX shell.*allow_unsupported_shells=true"
        ):
            run(SshProbe(), job(dev, "show version"), ctx)
        el = run(SshProbe(), job(dev, "show version", allow_unsupported_shells="true"), ctx)
        assert el.findtext("stdout") == "% Invalid input detected at marker.\n"


def test_unsupported_shells_mode_sends_the_command_without_path(sshd: SshServer, tmp_path: Path) -> None:
    ctx = ctx_for(sshd, pinned_state(tmp_path, sshd))
    out = run(SshProbe(), job(sshd, "echo $PATH", allow_unsupported_shells="true"), ctx).findtext("stdout")
    assert out and not out.startswith(DEFAULT_PATH)


def test_pinned_default_refuses_an_unknown_key_and_pins_nothing(sshd: SshServer, tmp_path: Path) -> None:
    ctx = ctx_for(sshd, tmp_path)
    with pytest.raises(ProbeError, match="is not pinned"):
        run(SshProbe(), job(sshd, "echo should-not-run"), ctx)
    assert not (tmp_path / "known_hosts").exists()
    assert [f["verdict"] for f in events(ctx, "ssh.hostkey.rejected")] == ["unknown"]
    assert events(ctx, "ssh.hostkey.pinned") == []


def test_pin_on_first_use_pins_then_refuses_a_changed_key(sshd: SshServer, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    real_key = parse_public_key_file(sshd.host_key_pub.read_bytes(), source="pub")
    with run_sshd_new_host_key(sshd, tmp_path / "other") as other:
        r = rule(sshd.port, other.port, host_keys="pin-on-first-use")
        ctx = ctx_for(sshd, state, r)
        # 1. First contact: the key is pinned, audited, and the command runs.
        assert run(SshProbe(), job(sshd, "echo first"), ctx).findtext("stdout") == "first\n"
        assert KnownHosts(state / "known_hosts").keys_for(["127.0.0.1"], sshd.port) == [real_key]
        (pin,) = events(ctx, "ssh.hostkey.pinned")
        assert pin["fingerprint"] == real_key.fingerprint() and pin["rule"] == 1 and pin["port"] == sshd.port
        # 2. The same key again: it matches, nothing new is pinned.
        assert run(SshProbe(), job(sshd, "echo again"), ctx).findtext("stdout") == "again\n"
        assert len(events(ctx, "ssh.hostkey.pinned")) == 1
        # 3. The target now shows another key: re-point the pin at the second sshd (same address, its
        #    port), as if the host behind it had been replaced. It is refused, audited, and not re-pinned.
        kh = state / "known_hosts"
        kh.write_text(kh.read_text().replace(f"[127.0.0.1]:{sshd.port}", f"[127.0.0.1]:{other.port}"))
        pinned_before = kh.read_bytes()
        with pytest.raises(ProbeError, match="HOST KEY CHANGED"):
            run(SshProbe(), job(other, "echo should-not-run"), ctx)
        (rejected,) = events(ctx, "ssh.hostkey.rejected")
        assert rejected["verdict"] == "changed" and rejected["port"] == other.port
        assert kh.read_bytes() == pinned_before and len(events(ctx, "ssh.hostkey.pinned")) == 1


def test_concurrent_first_contacts_pin_once(sshd: SshServer, tmp_path: Path) -> None:
    ctx = ctx_for(sshd, tmp_path, rule(sshd.port, host_keys="pin-on-first-use"))
    probe = SshProbe(max_connections=4, per_target=4)

    async def go() -> list[str]:
        try:
            els = await asyncio.gather(*(probe.run(job(sshd, f"echo {i}"), ctx) for i in range(4)))
        finally:
            await probe.aclose()
        return [e.findtext("stdout") or "" for e in els]

    assert asyncio.run(go()) == [f"{i}\n" for i in range(4)]
    assert len(events(ctx, "ssh.hostkey.pinned")) == 1
    assert len((tmp_path / "known_hosts").read_text().splitlines()) == 1


def test_the_session_feeds_sudo_the_password_of_the_credential_that_logged_in(
    sshd: SshServer, tmp_path: Path
) -> None:
    import hashlib
    import threading

    from appliance.probes._sshcommand import Plan
    from appliance.probes._sshexec import SessionLimits
    from appliance.probes._sshsession import (
        Aborter,
        AuthMaterial,
        HostKeyPolicy,
        SessionSpec,
        Target,
        run_session,
    )

    # A stand-in for "sudo -S": read the first stdin line and print its digest, never the line itself.
    plan = Plan("x", 'IFS= read -r p; printf %s "$p" | sha256sum; cat', "after\n", password_first=True)
    spec = SessionSpec((plan,), True, HostKeyPolicy(False, threading.Lock(), lambda key: None))
    target = Target("127.0.0.1", ipaddress_of("127.0.0.1"), sshd.port)
    auth = AuthMaterial(user=sshd.user, alias="pw", password=sshd.password)
    known = KnownHosts(pinned_state(tmp_path, sshd) / "known_hosts")
    (result,) = run_session(target, auth, known, spec, SessionLimits(5, 5, 10_000), Aborter())
    digest = hashlib.sha256(sshd.password.encode()).hexdigest()
    assert result.stdout == f"{digest}  -\nafter\n".encode()


def test_must_sudo_through_the_candidate_loop_uses_the_credential_that_worked(
    sshd: SshServer, tmp_path: Path
) -> None:
    r = dataclasses.replace(loopback_rule(("ssh",), ((sshd.port, sshd.port),), ("badpw", "pw")), sudo=True)
    ctx = make_ctx(Policy([r]), creds(sshd), pinned_state(tmp_path, sshd))
    j = job(sshd, "id -u", must_sudo="true")
    j = dataclasses.replace(j, parameters=tuple(p for p in j.parameters if p[0] != "credential"))
    el = run(SshProbe(), j, ctx)
    attempts = [(f["alias"], f["outcome"]) for f in events(ctx, "credential.attempt")]
    assert attempts == [("badpw", "rejected"), ("pw", "accepted")]
    text = (el.findtext("stdout") or "") + (el.findtext("stderr") or "")
    assert "sudo" in text and sshd.password not in text and "not-the-password" not in text


def ipaddress_of(text: str) -> IPAddress:
    import ipaddress

    return ipaddress.ip_address(text)
