"""The midbox Windows service under Wine's real Service Control Manager (services.exe).

The service runs Windows' CPython on this repository (the frozen midbox.exe is the same code
behind a different program path), answers a job from the development instance on 127.0.0.1, is
stopped through the SCM, and must stop gracefully: exit code 0, the audit log's appliance.stop,
the checkpoint posted. What Wine cannot show (delayed auto-start, restart on a nonzero exit, the
virtual account, ACLs, a real shutdown) is listed in the report and in build/README.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.helpers import AGENT, Pki, dev_instance, http_target
from tests.signing.helpers import install_trust, write_signed_config
from tests.support.running import (
    EXPIRES,
    NOT_BEFORE,
    audit_entries,
    http_job,
    signed_config,
    wait_answer,
)
from tests.support.wine_service import SERVICE, windows_config
from tests.windows.conftest import REPO, WinPy, result_of, wine_path

BOOT = (
    f"import sys; sys.path.insert(0, r'{wine_path(REPO)}'); from appliance.cli import main; sys.exit(main())"
)


@pytest.fixture
def uninstalled_after(winpy: WinPy, wine_awake: None) -> Iterator[str]:
    yield SERVICE
    # Whatever happened, leave no service behind in the prefix.
    winpy(
        "from appliance.winscm import Scm, NotInstalledError\n"
        "try:\n    Scm().uninstall(sys.argv[1], 60)\nexcept NotInstalledError:\n    pass\n",
        SERVICE,
    )


def test_the_scm_starts_the_service_it_answers_a_job_and_stops_gracefully_on_stop(
    winpy: WinPy, dev_pki: Pki, tmp_path: Path, state_dir: Path, uninstalled_after: str
) -> None:
    key = Ed25519PrivateKey.generate()
    install_trust(state_dir, [key])
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        config = signed_config(
            tmp_path / "admin",
            [key],
            windows_config(instance.url, dev_pki),
        )
        started = time.monotonic()
        installed = result_of(
            winpy(
                "import json\n"
                "from appliance.winscm import Scm, midbox_spec\n"
                "name, boot, config, state = sys.argv[1:5]\n"
                "spec = midbox_spec([sys.executable, '-c', boot], name, config, state)\n"
                "scm = Scm()\n"
                "notes = scm.install(spec)\n"
                "scm.start(name)\n"
                "print(json.dumps({'notes': notes, 'line': spec.command_line, 'state': scm.query(name).as_dict()}))",
                SERVICE,
                BOOT,
                wine_path(config),
                wine_path(state_dir),
            )
        )
        assert installed["state"]["state"] in ("start-pending", "running"), installed
        assert installed["line"].startswith('"') and '"service" "run"' in installed["line"]
        answer = wait_answer(store, http_job(store, f"{target}/hello"), timeout=90)
        first_answer_s = time.monotonic() - started
        assert answer["error_string"] == "", answer["error_string"]
        assert "hello" in answer["payload"]
        assert answer["agent"] == AGENT

        running = result_of(
            winpy(
                "import json\nfrom appliance.winscm import Scm\nprint(json.dumps(Scm().query(sys.argv[1]).as_dict()))",
                SERVICE,
            )
        )
        assert running["state"] == "running" and running["pid"], running

        # Stop through the SCM (SERVICE_CONTROL_STOP), as 'sc stop' or the Services console would.
        stop_started = time.monotonic()
        stopped = result_of(
            winpy(
                "import json\nfrom appliance.winscm import Scm\nprint(json.dumps(Scm().stop(sys.argv[1], 60).as_dict()))",
                SERVICE,
            )
        )
        stop_s = time.monotonic() - stop_started
        assert stopped["state"] == "stopped"
        assert (stopped["win32_exit_code"], stopped["service_exit_code"]) == (0, 0), stopped
        anchors = store.query("ecc_queue", "queue=input^topic=midbox.audit.checkpoint")
        assert anchors, "the audit checkpoint was not posted while stopping"

    events = audit_entries(state_dir)
    names = [e["event"] for e in events]
    for event in ("config.accepted", "appliance.start", "job.claimed", "result.posted", "appliance.stop"):
        assert event in names, f"{event} missing from the audit log: {names}"
    stop = next(e for e in events if e["event"] == "appliance.stop")
    assert stop["fields"]["reason"] == "service stop"  # type: ignore[index]
    log = (state_dir / "service.log").read_text(encoding="utf-8")
    assert f"service {SERVICE} running" in log and "stopping gracefully" in log

    removed = winpy(
        "from appliance.cli import main\nsys.exit(main(['service', 'uninstall', '--name', sys.argv[1]]))",
        SERVICE,
    )
    assert removed.returncode == 0, removed.stderr
    gone = winpy(
        "from appliance.cli import main\nsys.exit(main(['service', 'status', '--name', sys.argv[1]]))",
        SERVICE,
    )
    assert gone.returncode == 1 and "no service named" in gone.stderr
    # Measured, not asserted (the Wine process start is part of both figures).
    print(
        f"under Wine: first answer {first_answer_s:.1f} s after install; stop through the SCM {stop_s:.1f} s"
    )


def test_a_refused_config_stops_the_service_with_exit_code_1_reported_to_the_scm(
    winpy: WinPy, dev_pki: Pki, tmp_path: Path, state_dir: Path, uninstalled_after: str
) -> None:
    key = Ed25519PrivateKey.generate()
    install_trust(state_dir, [key])
    config = signed_config(
        tmp_path / "admin",
        [key],
        windows_config("https://127.0.0.1:9", dev_pki),
    )
    config.write_bytes(config.read_bytes() + b"# edited after signing\n")
    final = result_of(
        winpy(
            "import json, time\n"
            "from appliance.winscm import Scm, midbox_spec\n"
            "name, boot, config, state = sys.argv[1:5]\n"
            "scm = Scm()\n"
            "scm.install(midbox_spec([sys.executable, '-c', boot], name, config, state))\n"
            "scm.start(name)\n"
            "deadline = time.monotonic() + 60\n"
            "while scm.query(name).state != 'stopped' and time.monotonic() < deadline:\n"
            "    time.sleep(0.2)\n"
            "print(json.dumps(scm.query(name).as_dict()))",
            SERVICE,
            BOOT,
            wine_path(config),
            wine_path(state_dir),
        )
    )
    assert final["state"] == "stopped"
    assert (final["win32_exit_code"], final["service_exit_code"]) == (1066, 1), final  # service-specific: 1
    assert "config.refused" in [e["event"] for e in audit_entries(state_dir)]
    status = winpy(
        "from appliance.cli import main\nsys.exit(main(['service', 'status', '--name', sys.argv[1]]))",
        SERVICE,
    )
    assert status.returncode == 1 and "stopped" in status.stdout and "last exit code 1" in status.stdout
    assert "midbox stopped:" in (state_dir / "service.log").read_text(encoding="utf-8")


def test_cli_install_verifies_checks_the_binary_location_and_uninstall_removes_it(
    winpy: WinPy, dev_pki: Pki, tmp_path: Path, state_dir: Path, uninstalled_after: str
) -> None:
    key = Ed25519PrivateKey.generate()
    install_trust(state_dir, [key])
    text = windows_config("https://127.0.0.1:9", dev_pki)  # verified, never connected to
    config = write_signed_config(
        tmp_path / "admin", [key], text, version=1, expires=EXPIRES, not_before=NOT_BEFORE
    )
    cli = "from appliance.cli import main\nsys.exit(main(sys.argv[1:]))"
    base = [
        "service",
        "install",
        "--name",
        SERVICE,
        "--config",
        wine_path(config),
        "--state-dir",
        wine_path(state_dir),
    ]

    # python.exe lives outside Program Files: refused unless the operator says it is deliberate.
    refused = winpy(cli, *base, "--no-start")
    assert refused.returncode == 2 and "Program Files" in refused.stderr, refused.stderr
    # Install replaces the state dir's access list, so never on a drive root.
    root = winpy(cli, *base[:-1], "Z:\\", "--no-start", "--unsafe-binary-location")
    assert root.returncode == 2 and "shared folder" in root.stderr, root.stderr
    # An edited config is refused before the SCM is touched.
    config.write_bytes(config.read_bytes() + b"# edited\n")
    unsigned = winpy(cli, *base, "--no-start", "--unsafe-binary-location")
    assert unsigned.returncode == 1, unsigned.stderr
    write_signed_config(tmp_path / "admin", [key], text, version=1, expires=EXPIRES, not_before=NOT_BEFORE)

    done = winpy(cli, *base, "--no-start", "--unsafe-binary-location")
    assert done.returncode == 0, done.stderr
    assert "unsafe" in done.stderr and f"installed service {SERVICE}" in done.stdout
    again = winpy(cli, *base, "--no-start", "--unsafe-binary-location")
    assert again.returncode == 1 and "already installed" in again.stderr

    status = winpy(cli, "service", "status", "--name", SERVICE, "--json")
    assert status.returncode == 1, status.stderr  # installed, not running
    assert json.loads(status.stdout.strip().splitlines()[-1])["state"] == "stopped"

    removed = winpy(cli, "service", "uninstall", "--name", SERVICE)
    assert removed.returncode == 0, removed.stderr
    missing = winpy(cli, "service", "uninstall", "--name", SERVICE)
    assert missing.returncode == 1 and "no service named" in missing.stderr


def test_run_by_hand_is_a_usage_error_not_a_hang(winpy: WinPy, tmp_path: Path, wine_awake: None) -> None:
    done = winpy(
        "from appliance.cli import main\nsys.exit(main(sys.argv[1:]))",
        "service",
        "run",
        "--config",
        wine_path(tmp_path / "none.toml"),
        "--state-dir",
        wine_path(tmp_path / "state"),
        timeout=60,
    )
    assert done.returncode == 2 and "Service Control Manager" in done.stderr, done.stderr


def test_command_lines_split_back_into_the_same_arguments_by_windows(winpy: WinPy) -> None:
    args = [
        r"C:\Program Files\midbox\midbox.exe",
        "service",
        r"C:\a dir\\",
        "",
        r"x\"y".replace('"', ""),
        "a\\b c",
    ]
    out = result_of(
        winpy(
            "import ctypes, json\nfrom ctypes import wintypes\nfrom appliance.winscm import command_line\n"
            "args = json.loads(sys.argv[1])\n"
            "f = ctypes.windll.shell32.CommandLineToArgvW\n"
            "f.restype = ctypes.POINTER(wintypes.LPWSTR)\n"
            "n = ctypes.c_int()\n"
            "argv = f(command_line(args), ctypes.byref(n))\n"
            "print(json.dumps([argv[i] for i in range(n.value)]))",
            json.dumps(args),
        )
    )
    assert out == args
