"""The 15 operator mistakes of issue 16, each as an operator makes it: the command they ran, its exit
code, and one line that names the fix. Rows that depend on another branch's work are xfail with why."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devinstance import pki
from tests.helpers import Pki, dev_instance
from tests.signing.helpers import install_trust, write_signed_config
from tests.support.running import EXPIRES as RUN_EXPIRES
from tests.support.running import appliance, config_bytes

ROOT = Path(__file__).resolve().parents[2]
# The expiry config_bytes writes into the file: the signature must carry the very same one.
EXPIRES = RUN_EXPIRES
NOW = EXPIRES - dt.timedelta(days=30)
NOT_BEFORE = NOW - dt.timedelta(hours=1)


@dataclass
class Ctx:
    tmp: Path
    state: Path
    pki: Pki
    key: Ed25519PrivateKey
    stack: contextlib.ExitStack
    stdin: str = ""  # what the operator types or pipes in

    def signed(
        self, url: str, body: bytes | None = None, *, signer: Ed25519PrivateKey | None = None, **kw: object
    ) -> Path:
        data = body if body is not None else config_bytes(url, self.pki, 1, "22")
        args: dict[str, object] = {"version": 1, "expires": EXPIRES, "not_before": NOT_BEFORE, **kw}
        return write_signed_config(self.tmp / "admin", [signer or self.key], data, **args)  # type: ignore[arg-type]

    def instance_url(self) -> str:
        return self.stack.enter_context(dev_instance(self.pki, self.tmp / "db.sqlite")).url

    def dead_url(self) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return f"https://127.0.0.1:{s.getsockname()[1]}"

    def secret_file(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text + "\n")
        path.chmod(0o600)
        return path


Setup = Callable[[Ctx], list[str]]


def toml_typo(c: Ctx) -> list[str]:
    subprocess.run(
        midbox_cmd("keygen", "--out", str(c.tmp / "keys"), "--name", "alice", "--no-passphrase"),
        check=True,
        env=env(),
        capture_output=True,
    )
    config = c.tmp / "midbox.toml"
    config.write_bytes(
        config_bytes(c.dead_url(), c.pki, 1, "22").replace(
            b"ports = [22]", b'ports = [22]\ncredential = ["x"]'
        )
    )
    return ["config", "sign", str(config), "--key", str(c.tmp / "keys" / "alice.key")]


def unknown_signer(c: Ctx) -> list[str]:
    return ["config", "verify", str(c.signed(c.dead_url(), signer=Ed25519PrivateKey.generate()))]


def expired(c: Ctx) -> list[str]:
    past = NOW - dt.timedelta(days=1)
    body = config_bytes(c.dead_url(), c.pki, 1, "22").replace(
        EXPIRES.strftime("%Y-%m-%dT%H:%M:%SZ").encode(), past.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    )
    return ["config", "verify", str(c.signed("", body, expires=past, not_before=NOW - dt.timedelta(days=3)))]


def edited(c: Ctx) -> list[str]:
    config = c.signed(c.dead_url())
    config.write_bytes(config.read_bytes().replace(b"ports = [22]", b"ports = [22, 23]"))
    return ["config", "verify", str(config)]


def wrong_ca(c: Ctx) -> list[str]:
    other = pki.ensure_ca(c.tmp / "other-ca", name="another CA")
    url = c.instance_url()
    body = config_bytes(url, c.pki, 1, "22").replace(str(c.pki.ca.cert).encode(), str(other.cert).encode())
    return ["doctor", "--config", str(c.signed(url, body))]


def other_name(c: Ctx) -> list[str]:
    theirs = pki.issue(c.pki.ca, c.tmp / "edge-02", "appliance", "mid.server.edge-02", server=False)
    url = c.instance_url()
    body = config_bytes(url, c.pki, 1, "22")
    body = body.replace(str(c.pki.client.cert).encode(), str(theirs.cert).encode())
    body = body.replace(str(c.pki.client.key).encode(), str(theirs.key).encode())
    return ["doctor", "--config", str(c.signed(url, body))]


def unreachable(c: Ctx) -> list[str]:
    return ["doctor", "--config", str(c.signed(c.dead_url()))]


def clock_behind(c: Ctx) -> list[str]:
    # This host's clock an hour behind the admins': the config is not valid yet here.
    return ["config", "verify", str(c.signed(c.dead_url(), not_before=NOW + dt.timedelta(hours=1)))]


def wrong_passphrase(c: Ctx) -> list[str]:
    right, wrong = c.secret_file("pass", "right pass phrase"), c.secret_file("wrong", "wrong pass phrase")
    add = midbox_cmd(
        "creds",
        "add",
        "x",
        "--type",
        "http-bearer",
        "--state-dir",
        str(c.state),
        "--passphrase-file",
        str(right),
    )
    subprocess.run(add, input="token\n", text=True, check=True, env=env(), capture_output=True)
    return ["creds", "list", "--passphrase-file", str(wrong)]


def alias_missing(c: Ctx) -> list[str]:
    url = c.instance_url()
    body = config_bytes(url, c.pki, 1, "22").replace(b'probes = ["http"]', b'probes = ["ssh"]')
    body = body.replace(b"ports = [22]", b'ports = [22]\ncredentials = ["linux-ro"]')
    return ["doctor", "--config", str(c.signed(url, body))]


def outside_allowlist(c: Ctx) -> list[str]:
    config = c.signed(c.dead_url())
    return [
        "policy",
        "explain",
        "--config",
        str(config),
        "--topic",
        "SSHCommand",
        "--target",
        "10.99.0.1",
    ]


def loose_state_dir(c: Ctx) -> list[str]:
    c.state.chmod(0o755)
    return ["doctor", "--config", str(c.signed(c.dead_url()))]


def wrong_user(c: Ctx) -> list[str]:
    # A state dir owned by a uid this host does not know (copied from another host, or the service user
    # removed): root cannot act as its owner. (Root on the service user's own dir acts as that user.)
    os.chown(c.state, 4242, 4242)
    c.stdin = "token\n"
    return ["creds", "add", "x", "--type", "http-bearer"]


def missing_config(c: Ctx) -> list[str]:
    if Path("/etc/midbox/midbox.toml").exists():
        pytest.skip("this host has a config at the default path")
    return ["run"]


def sighup_broken(c: Ctx) -> list[str]:
    url = c.instance_url()
    config = c.signed(url)
    log = c.tmp / "run.log"
    proc = c.stack.enter_context(appliance(config, c.state, log))
    deadline = time.monotonic() + 30
    while "running as" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    c.stack.callback(lambda: (proc.send_signal(signal.SIGTERM), proc.wait(timeout=30)))
    config.write_bytes(config.read_bytes().replace(b"ports = [22]", b"ports = [22, 23]"))
    return ["reload", "--config", str(config)]


ROWS = [
    ("TOML key typo", toml_typo, 1, "did you mean 'credentials'?", None),
    ("config signed by an unknown key", unknown_signer, 1, "see 'midbox trust show'", None),
    ("expired config", expired, 1, "sign a new version with a later 'expires'", None),
    ("config edited after signing", edited, 1, "sign the edit (midbox config sign --replace)", None),
    ("wrong CA file", wrong_ca, 1, "put the CA that issued it in that file", None),
    ("certificate for another name", other_name, 1, "mid.server.edge-02", None),
    ("instance unreachable", unreachable, 3, "refused the connection: check instance.url's port", None),
    ("clock skew", clock_behind, 1, "(check the clock)", None),
    ("wrong store passphrase", wrong_passphrase, 1, "check the passphrase given (--passphrase-file", None),
    ("alias not in store", alias_missing, 1, "add it with 'midbox creds add linux-ro --type", None),
    ("target outside allowlist", outside_allowlist, 1, "add one to the signed config", None),
    ("loose state-dir mode", loose_state_dir, 1, "chmod 700", None),
    ("running as the wrong user", wrong_user, 1, "run: chown -R midbox:", None),
    ("missing --config", missing_config, 1, "pass --config", None),
    ("SIGHUP with a broken config", sighup_broken, 1, "sign the edit (midbox config sign --replace)", None),
]


def env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)}


def midbox_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "appliance", *args]


@pytest.fixture
def ctx(tmp_path: Path, state_dir: Path, dev_pki: Pki) -> Iterator[Ctx]:
    key = Ed25519PrivateKey.generate()
    install_trust(state_dir, [key])
    with contextlib.ExitStack() as stack:
        yield Ctx(tmp_path, state_dir, dev_pki, key, stack)


@pytest.mark.parametrize(
    ("setup", "code", "fix"),
    [
        pytest.param(
            s, code, fix, id=name, marks=[pytest.mark.xfail(reason=why, strict=False)] if why else []
        )
        for name, s, code, fix, why in ROWS
    ],
)
def test_operator_mistake(ctx: Ctx, setup: Setup, code: int, fix: str) -> None:
    args = setup(ctx)
    if "--state-dir" not in args:
        args = [*args, "--state-dir", str(ctx.state)]
    r = subprocess.run(
        midbox_cmd(*args),
        capture_output=True,
        text=True,
        timeout=90,
        env=env(),
        cwd=ctx.tmp,
        input=ctx.stdin,
    )
    assert r.returncode == code, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [line for line in (r.stdout + r.stderr).splitlines() if fix in line]
    assert len(lines) == 1, (fix, r.stdout, r.stderr)  # the fix is on the one line that states the problem
    assert len(lines[0]) < 400


def test_the_table_is_the_issues_fifteen() -> None:
    assert len(ROWS) == 15 and len({r[0] for r in ROWS}) == 15
