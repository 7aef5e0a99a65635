"""``midbox creds`` through ``python -m appliance``, as an operator runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.cli import build_parser
from tests.support.cli import child_env, run_process
from tests.vault.conftest import PLANTED

ROOT = Path(__file__).resolve().parents[2]


def midbox(
    state: Path, *args: str | Path, stdin: str = "", extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_process("creds", *args, "--state-dir", state, env=child_env(**(extra_env or {})), stdin=stdin)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def test_add_list_verify_remove(state: Path, tmp_path: Path) -> None:
    r = midbox(state, "add", "web", "--type", "http-basic", "--user", "admin", stdin=PLANTED.decode() + "\n")
    assert r.returncode == 0 and r.stdout.strip() == "added web (http-basic)", r.stderr
    r = midbox(
        state,
        "add",
        "v3",
        "--type",
        "snmp-usm",
        "--user",
        "mon",
        "--auth-protocol",
        "SHA-512",
        stdin="authpass1\nprivpass2\n",
    )
    assert r.returncode == 0, r.stderr
    key = tmp_path / "id_test"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n")
    assert (
        midbox(state, "add", "box", "--type", "ssh-key", "--user", "root", "--key-file", key).returncode == 0
    )
    listed = json.loads(midbox(state, "list", "--json").stdout)
    assert [(c["alias"], c["type"], c["user"]) for c in listed] == [
        ("box", "ssh-key", "root"),
        ("v3", "snmp-usm", "mon"),
        ("web", "http-basic", "admin"),
    ]
    assert listed[1]["options"] == {"auth_protocol": "SHA-512", "priv_protocol": "AES"}
    text = midbox(state, "list").stdout
    assert PLANTED.decode() not in text and "authpass1" not in text and "AAAA" not in text
    r = midbox(state, "verify")
    assert r.returncode == 0 and "ok: 3 credentials" in r.stdout
    assert midbox(state, "remove", "box").returncode == 0
    r = midbox(state, "remove", "box")
    assert r.returncode == 1 and "not in the store" in r.stderr
    assert len(json.loads(midbox(state, "list", "--json").stdout)) == 2


def test_a_community_can_be_stored_as_snmp_v1(state: Path) -> None:
    r = midbox(state, "add", "old", "--type", "snmp-community", "--snmp-version", "1", stdin="public\n")
    assert r.returncode == 0, r.stderr
    listed = json.loads(midbox(state, "list", "--json").stdout)
    assert listed[0]["options"] == {"version": "1"}
    r = midbox(
        state,
        "add",
        "v3",
        "--type",
        "snmp-usm",
        "--user",
        "u",
        "--snmp-version",
        "1",
        stdin="a" * 8 + "\n" + "b" * 8 + "\n",
    )
    assert r.returncode != 0 and "--snmp-version is for type snmp-community only" in r.stderr


def test_verify_exits_1_on_a_tampered_store(state: Path) -> None:
    midbox(state, "add", "web", "--type", "http-bearer", stdin="tok-abc.def\n")
    store = state / "credentials.store"
    data = bytearray(store.read_bytes())
    data[len(data) // 2] ^= 4
    store.write_bytes(bytes(data))
    r = midbox(state, "verify")
    assert r.returncode == 1 and "tampered" in r.stdout
    r = midbox(state, "list")
    assert r.returncode == 1 and "tampered" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_secret_options_do_not_exist_on_the_command_line() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["creds"]  # type: ignore[union-attr]
    add = next(a for a in sub._actions if a.dest == "creds_command").choices["add"]  # type: ignore[union-attr]
    options = {s for a in add._actions for s in a.option_strings}
    assert options == {
        "-h",
        "--help",
        "--type",
        "--user",
        "--auth-protocol",
        "--priv-protocol",
        "--snmp-version",
        "--key-file",
        "--ask-passphrase",
        "--passphrase-file",
        "--state-dir",
        "--json",
        "--log-format",
        "-v",
        "--verbose",
        "-q",
        "--quiet",
    }
    positionals = [a.dest for a in add._actions if not a.option_strings]
    assert positionals == ["alias"]


@pytest.mark.parametrize("argv", [["--password", "x"], ["--secret", "x"], ["hunter2extra"]])
def test_a_secret_on_argv_is_refused_and_nothing_is_written(state: Path, argv: list[str]) -> None:
    r = midbox(state, "add", "web", "--type", "http-basic", "--user", "a", *argv, stdin="real-secret\n")
    assert r.returncode == 2
    assert not (state / "credentials.store").exists()


def test_the_secret_is_not_in_the_process_argv_or_environment(state: Path) -> None:
    env = {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appliance",
            "creds",
            "add",
            "web",
            "--type",
            "http-basic",
            "--user",
            "u",
            "--state-dir",
            str(state),
        ],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(PLANTED + b"\n")
        proc.stdin.flush()
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
        proc.stdin.close()
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert PLANTED not in cmdline and PLANTED not in environ


def test_input_errors_are_usage_errors(state: Path) -> None:
    assert midbox(state, "add", "web", "--type", "http-basic", stdin="x\n").returncode == 2  # no --user
    assert (
        midbox(state, "add", "v3", "--type", "snmp-usm", "--user", "m", stdin="short\nshort\n").returncode
        == 2
    )
    assert (
        midbox(state, "add", "v3", "--type", "snmp-usm", "--user", "m", stdin="onlyoneline\n").returncode == 2
    )
    assert midbox(state, "add", "t", "--type", "http-bearer", stdin="bad token\n").returncode == 2
    assert midbox(state, "add", "bad alias", "--type", "http-bearer", stdin="tok\n").returncode == 2
    assert midbox(state, "add", "c", "--type", "snmp-community", stdin="\n").returncode == 2
    assert not (state / "credentials.store").exists()


def test_passphrase_file_store_and_rotation(state: Path, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("first passphrase\n")
    pw.chmod(0o600)
    r = midbox(state, "add", "web", "--type", "http-bearer", "--passphrase-file", pw, stdin="tok-1\n")
    assert r.returncode == 0, r.stderr
    r = midbox(state, "list")
    assert r.returncode == 2 and "--passphrase-file" in r.stderr  # no terminal to ask
    assert midbox(state, "list", "--passphrase-file", pw).returncode == 0
    new = tmp_path / "pw2"
    new.write_text("second passphrase\n")
    new.chmod(0o600)
    r = midbox(state, "rotate-key", "--reencrypt", "--passphrase-file", pw, "--new-passphrase-file", new)
    assert r.returncode == 0, r.stderr
    assert midbox(state, "verify", "--passphrase-file", pw).returncode == 1
    assert midbox(state, "verify", "--passphrase-file", new).returncode == 0
    r = midbox(state, "rotate-key", "--passphrase-file", new, "--remove-passphrase")
    assert r.returncode == 0, r.stderr
    assert midbox(state, "verify").returncode == 0


def test_loose_passphrase_file_is_refused(state: Path, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("a passphrase\n")
    pw.chmod(0o644)
    r = midbox(state, "add", "web", "--type", "http-bearer", "--passphrase-file", pw, stdin="tok\n")
    assert r.returncode == 1 and f"chmod 600 {pw}" in r.stderr


def test_host_key_from_systemd_credentials_directory(state: Path, tmp_path: Path) -> None:
    creddir = tmp_path / "run-creds"
    creddir.mkdir(mode=0o700)
    (creddir / "midbox.host-key").write_bytes(os.urandom(32))
    (creddir / "midbox.host-key").chmod(0o400)
    env = {"CREDENTIALS_DIRECTORY": str(creddir)}
    assert midbox(state, "add", "web", "--type", "http-bearer", stdin="tok\n", extra_env=env).returncode == 0
    assert not (state / "host.key").exists()
    assert midbox(state, "verify", extra_env=env).returncode == 0
    r = midbox(state, "verify")  # without the credential, no key
    assert r.returncode == 1 and "host key" in r.stdout


def test_ask_passphrase_on_an_existing_store_is_refused(state: Path) -> None:
    assert midbox(state, "add", "a", "--type", "http-bearer", stdin="tok\n").returncode == 0
    r = midbox(state, "add", "b", "--type", "http-bearer", "--ask-passphrase", stdin="tok\n")
    assert r.returncode == 2 and "rotate-key --ask-new-passphrase" in r.stderr


def test_list_of_a_vanished_store_says_so(state: Path) -> None:
    r = midbox(state, "list")
    assert r.returncode == 0 and "no credentials" in r.stdout
    assert midbox(state, "add", "a", "--type", "http-bearer", stdin="tok\n").returncode == 0
    (state / "credentials.store").unlink()
    r = midbox(state, "list")
    assert r.returncode == 1 and "missing, but this appliance recorded generation 1" in r.stderr
    assert midbox(state, "verify").returncode == 1
