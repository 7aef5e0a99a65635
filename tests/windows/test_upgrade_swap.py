"""The upgrade's binary swap on Windows, in Windows' CPython under Wine, with the binaries running.

A running .exe cannot be overwritten or replaced, only renamed (Wine enforces the same, as the first
assertions show); appliance.upgrade.files moves it aside instead, both when swapping the new one in
and when a failed new one, still running, is rolled back.
"""

from __future__ import annotations

from pathlib import Path

from tests.windows.conftest import WinPy, result_of, wine_path

SNIPPET = r"""
import json, os, shutil, subprocess, sys, time
from pathlib import Path
from appliance.upgrade.files import keep_and_swap, restore, sha256_file

d = Path(sys.argv[1])
target, previous, staged = d / "midbox.exe", d / "midbox.previous.exe", d / ".midbox.exe.upgrade-new"
ping = Path(os.environ["SystemRoot"]) / "system32" / "ping.exe"
shutil.copy(ping, target)
staged.write_bytes(ping.read_bytes() + b"new release")  # an overlay: still a runnable program
out = {}
running = [subprocess.Popen([str(target), "-n", "30", "127.0.0.1"], stdout=subprocess.DEVNULL)]
try:
    time.sleep(1)
    old = sha256_file(target)
    try:
        os.replace(staged, target)
        out["replace_running"] = "allowed"
    except PermissionError:
        out["replace_running"] = "refused"
    keep_and_swap(target, previous, staged)
    out["swapped"] = [target.read_bytes().endswith(b"new release"), sha256_file(previous) == old, staged.exists()]
    running.append(subprocess.Popen([str(target), "-n", "30", "127.0.0.1"], stdout=subprocess.DEVNULL))
    time.sleep(1)
    restore(target, previous, old)
    out["restored"] = [sha256_file(target) == old, previous.exists(), (d / ".midbox.exe.failed").exists()]
finally:
    for p in running:
        p.kill()
        p.wait()
print(json.dumps(out))
"""


def test_a_running_exe_is_renamed_aside_on_swap_and_on_rollback(winpy: WinPy, tmp_path: Path) -> None:
    out = result_of(winpy(SNIPPET, wine_path(tmp_path)))
    assert out["replace_running"] == "refused"  # what Windows forbids, and why the code renames instead
    assert out["swapped"] == [True, True, False]
    assert out["restored"] == [True, False, True]
