"""The unpacked folder watch: reads keep the files' access times fresh; a removed file stops the appliance."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.errors import RunnerHaltedError
from appliance.service import ServiceOptions
from appliance.unpacked import Unpacked, watch
from tests.helpers import Pki, dev_instance, http_target
from tests.signing.helpers import install_trust
from tests.support.running import (
    audit_entries,
    config_bytes,
    http_job,
    service_thread,
    signed_config,
    wait_answer,
)

DAY = 24 * 3600


def unpacked_tree(root: Path) -> Unpacked:
    (root / "nacl").mkdir(parents=True)
    (root / "nacl" / "_sodium.abi3.so").write_bytes(b"\x7fELF" + b"\0" * 100)
    (root / "bcrypt").mkdir()
    (root / "bcrypt" / "_bcrypt.abi3.so").write_bytes(b"\x7fELF")
    (root / "base_library.zip").write_bytes(b"PK")
    (root / "empty").write_bytes(b"")
    return Unpacked.scan(root)


def test_the_scan_lists_every_file_below_the_folder(tmp_path: Path) -> None:
    tree = unpacked_tree(tmp_path / "_MEI1")
    assert [p.relative_to(tree.root).as_posix() for p in tree.files] == [
        "base_library.zip",
        "bcrypt/_bcrypt.abi3.so",
        "empty",
        "nacl/_sodium.abi3.so",
    ]
    assert Unpacked.of_this_process() is None  # from source: nothing unpacked to watch


def test_a_refresh_moves_old_access_times_on(tmp_path: Path) -> None:
    tree = unpacked_tree(tmp_path / "_MEI1")
    old = time.time() - 3 * DAY
    for path in tree.files:
        os.utime(path, (old, old))
    assert tree.refresh() == []
    noatime = bool(os.statvfs(tmp_path).f_flag & getattr(os, "ST_NOATIME", 0))
    if not noatime:  # relatime, the default: a read updates an access time older than a day
        assert all(path.stat().st_atime > time.time() - DAY for path in tree.files if path.stat().st_size)


def test_a_removed_file_is_named_with_the_fix(tmp_path: Path) -> None:
    tree = unpacked_tree(tmp_path / "_MEI1")
    (tree.root / "nacl" / "_sodium.abi3.so").unlink()
    gone = tree.refresh()
    assert gone == [tree.root / "nacl" / "_sodium.abi3.so"]
    text = tree.describe(gone)
    assert text.startswith(
        f"1 file(s) of the binary's unpacked folder {tree.root} were removed (nacl/_sodium"
    )
    assert "starts it again" in text and "exclude that folder from the cleaner" in text
    for path in tree.files:
        path.unlink(missing_ok=True)
    text = tree.describe(tree.refresh())
    assert (
        text.startswith("4 file(s) of")
        and "(base_library.zip, bcrypt/_bcrypt.abi3.so, empty and 1 more)" in text
    )


def test_the_watch_reports_a_removal_once_and_ends_on_stop(tmp_path: Path) -> None:
    tree = unpacked_tree(tmp_path / "_MEI1")
    reasons: list[str] = []

    async def removed_while_watched() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(watch(tree, stop, reasons.append, every_s=0.01))
        await asyncio.sleep(0.05)
        assert reasons == [] and not task.done()  # whole: it keeps watching
        (tree.root / "bcrypt" / "_bcrypt.abi3.so").unlink()
        await asyncio.wait_for(task, 5)

    asyncio.run(removed_while_watched())
    assert len(reasons) == 1 and "bcrypt/_bcrypt.abi3.so" in reasons[0]

    async def stopped() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(watch(tree, stop, reasons.append, every_s=3600))
        await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(stopped())
    assert len(reasons) == 1


def test_the_appliance_stops_with_exit_1_when_its_unpacked_files_are_removed(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    install_trust(state_dir, [key])
    tree = unpacked_tree(tmp_path / "_MEI9")
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        config = signed_config(tmp_path / "admin", [key], config_bytes(instance.url, dev_pki, 1, '"1-65535"'))
        options = ServiceOptions(config, state_dir, unpacked=tree, unpacked_watch_s=0.2)
        with service_thread(options) as service:
            assert service.ready.wait(20), service.result
            answer = wait_answer(store, http_job(store, f"{target}/hello"))
            assert answer["error_string"] == ""  # whole: it works, and goes on working
            time.sleep(0.5)
            assert service.thread.is_alive()
            (tree.root / "nacl" / "_sodium.abi3.so").unlink()
            service.thread.join(timeout=40)
            assert not service.thread.is_alive()
    result = service.result
    assert len(result) == 1 and isinstance(result[0], RunnerHaltedError), result
    assert result[0].exit_code == 1  # Restart=on-failure starts it again, and it unpacks afresh
    assert "nacl/_sodium.abi3.so" in str(result[0]) and "temp cleaner" in str(result[0])
    stops = [e for e in audit_entries(state_dir) if e["event"] == "appliance.stop"]
    assert len(stops) == 1
    reason = str(stops[0]["fields"]["reason"])  # type: ignore[index]
    assert reason.startswith("error: 1 file(s) of the binary's unpacked folder")
