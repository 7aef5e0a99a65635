"""The sealed log under Windows' own CPython (Wine): no pread, no fdatasync, a lock by msvcrt, and a
compaction that must close the log before renaming over it."""

from __future__ import annotations

from pathlib import Path

from tests.windows.conftest import WinPy, result_of, wine_path

CODE = """
import json, os, sys
from pathlib import Path
from hardening.sealedlog import Compaction, SealedLog, SealedLogBusyError
path = Path(sys.argv[1]) / "journal.log"
key = bytes(range(32))
out = {"pread": hasattr(os, "pread"), "fdatasync": hasattr(os, "fdatasync")}
log = SealedLog(path, key, "journal", compaction=Compaction(dead_lines=20, dead_bytes=10**9))
for i in range(40):
    log.put(f"e{i}", b"%d" % i)
    if i % 2:
        log.delete(f"e{i}")
log.settle()
out["lines"] = len(path.read_bytes().splitlines())
try:
    SealedLog(path, key, "journal")
    out["second_writer"] = "opened"
except SealedLogBusyError:
    out["second_writer"] = "refused"
out["get"] = log.get("e10").decode()
log.close()
with open(path, "ab") as fh:
    fh.write(b"P torn")
again = SealedLog(path, key, "journal")
out["entries"] = [n for n, _ in again.entries()]
out["torn_cut"] = path.read_bytes().endswith(b"\\n")
again.compact()
out["after_compact"] = len(list(again.names()))
again.close()
print(json.dumps(out))
"""


def test_the_sealed_log_works_on_windows(winpy: WinPy, tmp_path: Path) -> None:
    out = result_of(winpy(CODE, wine_path(tmp_path)))
    assert out["pread"] is False and out["fdatasync"] is False  # the fallbacks ran
    assert out["second_writer"] == "refused" and out["get"] == "10"
    assert out["lines"] < 1 + 60  # 60 lines written, compacted on the way
    assert out["entries"] == [f"e{i}" for i in range(0, 40, 2)] and out["torn_cut"]
    assert out["after_compact"] == 20
