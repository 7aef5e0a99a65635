"""The documented install path, end to end: bundle -> install.sh -> every next step install.sh prints,
run as root -> the service user's ``midbox run`` answers a job.

A scratch root holds the install (``install.sh --root DIR --user NAME``) and a real system user made
by the test owns its state folder, as ``useradd`` in install.sh would make ``midbox``. The binary is
the frozen one from MIDBOX_FROZEN_BINARY when set, else a stand-in script that runs this checkout
with a Python the service user may execute. Needs root, useradd and runuser; skips with the reason
if not.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hardening.signing.keys import public_pem
from tests.build import test_airgap_install as airgap
from tests.enroll.helpers import load_ca, pem, sign
from tests.helpers import AGENT, NAME, Pki, dev_instance, http_target
from tests.signing.helpers import write_signed_config

REPO = Path(__file__).resolve().parents[2]


def _world_executable(path: Path) -> bool:
    """Every directory above ``path`` may be entered by others and ``path`` run by them."""
    path = path.resolve()
    for parent in path.parents:
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return False
    return bool(os.stat(path).st_mode & stat.S_IXOTH)


def _stand_in() -> bytes:
    """A launcher for this checkout that the service user can run (the test is about the install
    path and file ownership; the frozen binary is used instead when MIDBOX_FROZEN_BINARY is set)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [Path(sys.executable), Path("/usr/bin") / version, Path("/usr/local/bin") / version]
    python = next((p for p in candidates if p.exists() and _world_executable(p)), None)
    if python is None:
        pytest.skip(f"no {version} the service user may run (tried {', '.join(map(str, candidates))})")
    site = Path(sysconfig.get_paths()["purelib"])
    return f'#!/bin/sh\nPYTHONPATH={REPO}:{site} exec {python} -m appliance "$@"\n'.encode()


@pytest.fixture
def service_user() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root to make a system user")
    for tool in ("useradd", "userdel", "setpriv"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool}")
    name = f"mbx{secrets.token_hex(4)}"
    made = subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"useradd is not permitted here: {made.stderr.strip()}")
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], capture_output=True, check=False)
        subprocess.run(["groupdel", name], capture_output=True, check=False)


@pytest.fixture
def scratch_root() -> Iterator[Path]:
    """Below /tmp and enterable by others (pytest's tmp_path is root-only)."""
    root = Path(tempfile.mkdtemp(prefix="midbox-root-"))
    os.chmod(root, 0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _midbox(binary: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(binary), *args],
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
        check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"},
    )
    assert done.returncode == 0, f"midbox {' '.join(args)}: {done.stdout}{done.stderr}"
    return done


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="install.sh needs coreutils sha256sum")
def test_the_documented_steps_end_in_the_service_users_run_answering_a_job(
    service_user: str, scratch_root: Path, tmp_path: Path, dev_pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "MIDBOX_FROZEN_BINARY" not in os.environ:
        monkeypatch.setattr(airgap, "_binary", _stand_in)
    bundle = airgap._unpacked_bundle(tmp_path / "media")
    done = subprocess.run(
        ["sh", str(bundle / "install.sh"), "--root", str(scratch_root), "--user", service_user],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The next steps name every step, in the form an operator types.
    for step in (
        "enroll --name",
        "enroll --install",
        "trust init",
        "config verify",
        "creds add",
        "hosts pin",
        "doctor",
        f"runuser -u {service_user} -- midbox run",
    ):
        assert step in done.stdout, step
    binary = scratch_root / "usr/local/bin/midbox"
    state, etc = scratch_root / "var/lib/midbox", scratch_root / "etc/midbox"
    uid = int(subprocess.run(["id", "-u", service_user], capture_output=True, text=True, check=True).stdout)
    assert state.stat().st_uid == uid and etc.stat().st_uid == 0
    unit = (scratch_root / "etc/systemd/system/midbox.service").read_text()
    assert f"User={service_user}\n" in unit
    sd = ("--state-dir", str(state))
    # As root, exactly as install.sh says.
    _midbox(binary, "enroll", "--name", NAME, "--out", str(etc), *sd)
    signed = tmp_path / "appliance-signed.crt"
    signed.write_bytes(pem(sign(etc / "appliance.csr", load_ca(dev_pki.ca.cert, dev_pki.ca.key))))
    _midbox(
        binary, "enroll", "--install", str(signed), "--ca-file", str(dev_pki.ca.cert), "--out", str(etc), *sd
    )
    admin = Ed25519PrivateKey.generate()
    admin_pub = tmp_path / "admin.pub"  # in root's own (0700) folder: read as root, written as the user
    admin_pub.write_bytes(public_pem(admin.public_key()))
    _midbox(binary, "trust", "init", "--pubkey", str(admin_pub), "--name", NAME, *sd)
    shutil.copyfile(dev_pki.ca.cert, etc / "instance-ca.pem")
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        expires = now + dt.timedelta(days=30)
        body = f"""version = 1
expires = {expires:%Y-%m-%dT%H:%M:%SZ}

[appliance]
name = "{NAME}"

[instance]
url = "{instance.url}"
ca_file = "instance-ca.pem"
client_cert = "appliance.crt"
client_key = "appliance.key"
poll_interval_s = 0.2

[[allow]]
cidr = "127.0.0.1/32"
probes = ["http"]
ports = ["1-65535"]
"""
        config = write_signed_config(
            etc,
            [admin],
            body.encode(),
            version=1,
            expires=expires,
            not_before=now - dt.timedelta(hours=1),
        )
        _midbox(binary, "config", "verify", str(config), *sd)
        _midbox(
            binary,
            "creds",
            "add",
            "web-ro",
            "--type",
            "http-basic",
            "--user",
            "discovery",
            *sd,
            stdin="not-a-real-password\n",
        )
        host_key = (
            Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        )
        (tmp_path / "target.pub").write_bytes(host_key + b"\n")
        _midbox(binary, "hosts", "pin", "127.0.0.1", str(tmp_path / "target.pub"), *sd)
        doctor = _midbox(binary, "doctor", "--config", str(config), *sd)
        assert "FAIL" not in doctor.stdout, doctor.stdout
        # Everything root wrote into the state folder belongs to the service user.
        for path in [state, *state.rglob("*")]:
            assert path.lstat().st_uid == uid, f"{path} is not {service_user}'s"
        key = etc / "appliance.key"
        assert b"ENCRYPTED PRIVATE KEY" in key.read_bytes()
        assert stat.S_IMODE(key.stat().st_mode) == 0o640 and key.stat().st_gid == etc.stat().st_gid
        # The service user's run, as the unit starts it (setpriv execs, as systemd's User= does, so
        # SIGTERM reaches midbox itself; runuser would stay in between).
        log = tmp_path / "run.log"
        setpriv = [
            str(shutil.which("setpriv")),
            "--reuid",
            service_user,
            "--regid",
            service_user,
            "--init-groups",
        ]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*setpriv, "--", str(binary), "run", "--config", str(config), *sd],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={"PATH": "/usr/bin:/bin"},
            )
        try:
            store = instance.state.store
            payload = f'<parameters><parameter name="url" value="{target}/hello"/></parameters>'
            [job] = store.enqueue(
                [{"agent": AGENT, "topic": "RESTProbe", "source": "127.0.0.1", "payload": payload}]
            )
            deadline = time.monotonic() + 60
            answer: list[dict[str, str]] = []
            while not answer and time.monotonic() < deadline and proc.poll() is None:
                answer = store.query("ecc_queue", f"queue=input^response_to={job}")
                time.sleep(0.1)
            assert answer, f"no answer; the run said: {log.read_text()[-3000:]}"
            assert "hello" in answer[0]["payload"] and not answer[0]["error_string"]
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()[-3000:]
    for path in [state, *state.rglob("*")]:
        assert path.lstat().st_uid == uid, f"{path} is not {service_user}'s after the run"
    # A file the service cannot read is a permission problem with its fix, never "a symlink is
    # refused" nor "re-run enroll".
    for name in ("appliance.crt", "appliance.key"):
        os.chmod(etc / name, 0o600)
        refused = subprocess.run(
            [*setpriv, "--", str(binary), "run", "--config", str(config), *sd],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={"PATH": "/usr/bin:/bin"},
        )
        os.chmod(etc / name, 0o640 if name.endswith(".key") else 0o644)
        line = refused.stderr.strip().splitlines()[-1]
        assert (
            refused.returncode == 1 and "permission denied" in line and f"chmod g+r {etc / name}" in line
        ), line
        assert "symlink" not in line and "enroll" not in line, line


def test_every_state_owner_entry_names_a_handler() -> None:
    """A renamed handler would silently stop acting as the service user: each entry must resolve."""
    import importlib

    from appliance.cli import AS_STATE_OWNER, DROPS_ROOT

    for entry in AS_STATE_OWNER | DROPS_ROOT:
        try:
            importlib.import_module(entry)
            continue  # a whole module
        except ImportError:
            module, _, name = entry.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name, None)), f"{entry} names no handler"
