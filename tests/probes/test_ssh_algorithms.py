"""The SSH algorithms midbox offers: exactly its allowlist, AEAD first, and a clear refusal below it."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import paramiko
import pytest

from appliance.errors import ProbeError
from appliance.probes import _sshalgs
from appliance.probes.ssh import SshProbe
from hardening.policy import Policy
from tests.daemons import SshServer, run_sshd_new_host_key
from tests.probes.conftest import loopback_rule, make_ctx
from tests.support.ssh import creds, job, pinned_state, run

pytestmark = pytest.mark.daemons


def test_the_allowlist_is_paramikos_set_in_midboxs_order() -> None:
    # A paramiko upgrade that adds or drops an algorithm fails here, so the change is reviewed.
    t = paramiko.Transport
    assert set(_sshalgs.KEX) == set(t._preferred_kex)
    assert set(_sshalgs.CIPHERS) == set(t._preferred_ciphers)
    assert set(_sshalgs.MACS) == set(t._preferred_macs)
    assert set(_sshalgs.HOST_KEYS) == set(t._preferred_keys)
    assert _sshalgs.CIPHERS[:2] == ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
    assert _sshalgs.MACS[0].endswith("-etm@openssh.com")
    assert _sshalgs.KEX[0] == "mlkem768x25519-sha256"  # post-quantum first, whatever it costs
    offered = _sshalgs.KEX + _sshalgs.CIPHERS + _sshalgs.MACS + _sshalgs.HOST_KEYS
    assert not [a for a in offered if a in ("ssh-rsa", "diffie-hellman-group14-sha1", "none")]


def test_pinned_key_types_decide_the_host_key_algorithms() -> None:
    assert _sshalgs.host_key_algorithms(["ssh-ed25519"]) == ("ssh-ed25519",)
    assert _sshalgs.host_key_algorithms(["ssh-rsa"]) == ("rsa-sha2-512", "rsa-sha2-256")  # never SHA-1
    assert _sshalgs.host_key_algorithms([]) == _sshalgs.HOST_KEYS
    assert _sshalgs.host_key_algorithms(["ssh-dss"]) == _sshalgs.HOST_KEYS


def test_openssh_negotiates_the_cheap_modern_set(sshd: SshServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="paramiko.transport")
    with socket.create_connection(("127.0.0.1", sshd.port)) as sock:
        t = paramiko.Transport(sock)
        try:
            _sshalgs.restrict(t, ["ssh-ed25519"])
            t.start_client(timeout=10)
            # OpenSSH 9.2 has no ML-KEM, so the hybrid falls back to curve25519.
            assert "Kex: curve25519-sha256@libssh.org" in caplog.messages
            assert (t.local_cipher, t.remote_cipher) == ("aes128-gcm@openssh.com",) * 2
            assert t.host_key_type == "ssh-ed25519"
        finally:
            t.close()


def test_a_server_below_the_floor_is_refused_with_the_fix(sshd: SshServer, tmp_path: Path) -> None:
    old = ("KexAlgorithms diffie-hellman-group14-sha1",)
    with run_sshd_new_host_key(sshd, tmp_path / "old", old) as srv:
        rule = loopback_rule(("ssh",), ((srv.port, srv.port),), ("key",))
        ctx = make_ctx(Policy([rule]), creds(srv), pinned_state(tmp_path, srv))
        with pytest.raises(ProbeError, match=r"offers no algorithm midbox allows.*enable a current one"):
            run(SshProbe(), job(srv, "true", "key"), ctx)
