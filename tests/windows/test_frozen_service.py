"""The frozen midbox.exe as a Windows service, driven only through its own command line, under Wine.

Runs when MIDBOX_WINDOWS_EXE names a built .exe (CI: after ``build/wine build``). The .exe is copied
under the prefix's Program Files (``service install`` refuses other places), installed for a signed
config, started by Wine's Service Control Manager, answers a job from the development instance, and
``service uninstall`` stops it through the SCM: gracefully, with the checkpoint posted and the audit
chain intact as the .exe itself verifies it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from midbox_build.wine import is_bootloader_wine_race  # on the path through tests/windows/conftest.py

from tests.helpers import AGENT, Pki, dev_instance, http_target
from tests.signing.helpers import install_trust
from tests.support.running import audit_entries, http_job, signed_config, wait_answer
from tests.support.wine_service import SERVICE, windows_config
from tests.windows.conftest import wine_env, wine_path

EXE = os.environ.get("MIDBOX_WINDOWS_EXE", "")
pytestmark = [
    pytest.mark.built_binary,
    pytest.mark.skipif(not EXE, reason="set MIDBOX_WINDOWS_EXE to a built midbox-windows-x86_64.exe"),
]


def midbox(wine_root: Path, exe: str, *args: str) -> subprocess.CompletedProcess[str]:
    for _ in range(2):  # a second start only after the bootloader's Wine race (build/tools/.../wine.py)
        proc = subprocess.run(
            ["wine", exe, *args],
            env=wine_env(wine_root),
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        if not is_bootloader_wine_race(proc.returncode, proc.stdout, proc.stderr):
            break
    return proc


@pytest.fixture
def installed_exe(wine_root: Path) -> str:
    folder = wine_root / "prefix" / "drive_c" / "Program Files" / SERVICE
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(EXE, folder / "midbox.exe")
    return f"C:\\Program Files\\{SERVICE}\\midbox.exe"


def test_the_frozen_exe_installs_runs_as_a_service_answers_and_stops_gracefully(
    wine_root: Path, wine_awake: None, installed_exe: str, dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    install_trust(state_dir, [key])
    state = wine_path(state_dir)
    try:
        with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
            store = instance.state.store
            config = signed_config(
                tmp_path / "admin",
                [key],
                windows_config(instance.url, dev_pki),
            )
            done = midbox(
                wine_root, installed_exe, "service", "install", "--name", SERVICE,
                "--config", wine_path(config), "--state-dir", state,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert f'"{installed_exe}" "service" "run"' in done.stdout, done.stdout
            answer = wait_answer(store, http_job(store, f"{target}/hello"), timeout=90)
            assert answer["error_string"] == "" and "hello" in answer["payload"]
            assert answer["agent"] == AGENT
            status = midbox(wine_root, installed_exe, "service", "status", "--name", SERVICE, "--json")
            assert status.returncode == 0 and '"running": true' in status.stdout, status.stdout

            removed = midbox(wine_root, installed_exe, "service", "uninstall", "--name", SERVICE)
            assert removed.returncode == 0, removed.stderr
            assert "stopped it" in removed.stdout
            assert store.query("ecc_queue", "queue=input^topic=midbox.audit.checkpoint")
    finally:
        midbox(wine_root, installed_exe, "service", "uninstall", "--name", SERVICE)
    stops = [e for e in audit_entries(state_dir) if e["event"] == "appliance.stop"]
    assert len(stops) == 1 and stops[0]["fields"]["reason"] == "service stop"  # type: ignore[index]
    pub = tmp_path / "audit.pub"
    assert (
        midbox(
            wine_root, installed_exe, "audit", "pubkey", "--state-dir", state, "--out", wine_path(pub)
        ).returncode
        == 0
    )
    verified = midbox(
        wine_root, installed_exe, "audit", "verify", "--state-dir", state, "--pubkey", wine_path(pub)
    )
    assert verified.returncode == 0 and verified.stdout.startswith("INTACT"), (
        verified.stdout + verified.stderr
    )
