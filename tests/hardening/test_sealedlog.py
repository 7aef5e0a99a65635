"""The sealed log behind the journal and the outbox: what it keeps, what it refuses, and what a crash
at any step leaves. Real files throughout; a crash is a real process ending itself (``os._exit``) at
the step named, and the fsync count is taken by wrapping ``os.fdatasync`` as tests/audit/test_log.py
wraps ``os.fsync``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hardening import _logformat as fmt
from hardening.sealedlog import ZERO_AHEAD, Compaction, SealedEntryError, SealedLog, SealedLogBusyError

KEY = bytes(range(32))
NEVER = Compaction(dead_lines=10**9, dead_bytes=10**12)


def lines(path: Path) -> list[bytes]:
    """The log's lines, without the zero-filled space ahead of the last one."""
    return path.read_bytes().split(b"\0")[0].splitlines(keepends=True)


def write_lines(path: Path, content: list[bytes]) -> None:
    path.write_bytes(b"".join(content))


def filled(path: Path, n: int = 6, compaction: Compaction = NEVER) -> dict[str, bytes]:
    with SealedLog(path, KEY, "journal", compaction=compaction) as log:
        for i in range(n):
            log.put(f"e{i}", f"entry {i}".encode())
    return {f"e{i}": f"entry {i}".encode() for i in range(n)}


def contents(path: Path, purpose: str = "journal") -> dict[str, bytes]:
    with SealedLog(path, KEY, purpose, writable=False) as log:
        return dict(log.entries())


def test_entries_survive_a_reopen_in_the_order_last_written(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    with SealedLog(path, KEY, "journal") as log:
        log.put("a", b"1")
        log.put("b", b"2")
        log.put("c", b"3")
        log.put("a", b"1 again")  # replaced: now the youngest
        log.delete("b")
        log.delete("never-there")
        assert list(log.names()) == ["c", "a"] and log.get("a") == b"1 again" and "b" not in log
        with pytest.raises(KeyError):
            log.get("b")
    with SealedLog(path, KEY, "journal") as again:
        assert list(again.entries()) == [("c", b"3"), ("a", b"1 again")]
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert b"1 again" not in path.read_bytes()  # sealed, not readable on disk


def test_one_writer_per_log(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    first = SealedLog(path, KEY, "journal")
    with pytest.raises(SealedLogBusyError, match="stop it first"):
        SealedLog(path, KEY, "journal")
    reader = SealedLog(path, KEY, "journal", writable=False)  # a reader needs no lock
    with pytest.raises(SealedLogBusyError, match="read-only"):
        reader.put("x", b"")
    first.close()
    SealedLog(path, KEY, "journal").close()


def test_a_torn_last_line_is_dropped_and_cut_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    expected = filled(path)
    whole = b"".join(lines(path))
    with SealedLog(path, KEY, "journal", compaction=NEVER) as log:
        log.put("torn", b"x" * 500)
    # A crash left the last write short: its end, and the zeros ahead, never reached the disk.
    torn = path.read_bytes()[: len(whole) + 300] + bytes(700)
    path.write_bytes(torn)
    # A reader (another process, while the writer may be mid-write) drops it and changes nothing.
    assert contents(path) == expected and path.read_bytes() == torn
    with SealedLog(path, KEY, "journal", compaction=NEVER) as log:
        assert dict(log.entries()) == expected
        assert path.read_bytes() == whole  # cut off on open, so the next line starts on a line
        log.put("next", b"after the crash")
    assert contents(path) == {**expected, "next": b"after the crash"}


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(
            lambda ls: ls.__setitem__(3, ls[3][:20] + bytes([ls[3][20] ^ 1]) + ls[3][21:]), id="flipped"
        ),
        pytest.param(lambda ls: ls.__setitem__(slice(2, 4), [ls[3], ls[2]]), id="moved"),
        pytest.param(lambda ls: ls.__delitem__(2), id="removed"),
        pytest.param(lambda ls: ls.__setitem__(2, ls[2].replace(b"e1", b"e9", 1)), id="renamed"),
        pytest.param(lambda ls: ls.__setitem__(2, b"P e1 " + b"A" * 40 + b"\n"), id="forged"),
        pytest.param(lambda ls: ls.__setitem__(2, b"not a line\n"), id="garbage"),
    ],
)
def test_a_damaged_line_in_the_middle_is_refused_with_the_fix(
    tmp_path: Path, damage: Callable[[list[bytes]], None]
) -> None:
    path = tmp_path / "journal.log"
    filled(path)
    content = lines(path)
    damage(content)
    write_lines(path, content)
    for writable in (True, False):
        with pytest.raises(SealedEntryError, match=r"line \d+ .*move it aside"):
            SealedLog(path, KEY, "journal", writable=writable)
    assert lines(path) == content  # refused, not repaired


def test_a_delete_turned_into_a_put_or_a_line_from_another_log_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    with SealedLog(path, KEY, "journal") as log:
        log.put("a", b"1")
        log.delete("a")
    content = lines(path)
    write_lines(path, [*content[:2], b"P" + content[2][1:]])
    with pytest.raises(SealedEntryError, match="line 3"):
        SealedLog(path, KEY, "journal")
    # The outbox's file under the journal's name: same key, other purpose.
    filled(tmp_path / "outbox.log")
    os.replace(tmp_path / "outbox.log", path)
    with pytest.raises(SealedEntryError, match="line 1"):
        SealedLog(path, KEY, "outbox")
    with pytest.raises(SealedEntryError, match="line 1"):
        SealedLog(path, bytes(32), "journal")  # another host's key


def test_a_line_of_an_older_file_does_not_fit_a_compacted_one(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    filled(path)
    old = lines(path)
    with SealedLog(path, KEY, "journal") as log:
        log.delete("e0")
        log.compact()
    new = lines(path)
    write_lines(path, [*new, old[1]])  # e0's put line replayed from before its deletion
    with pytest.raises(SealedEntryError):
        SealedLog(path, KEY, "journal", writable=False)


def test_compaction_keeps_exactly_the_live_entries(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    model: dict[str, bytes] = {}
    with SealedLog(path, KEY, "journal", compaction=Compaction(dead_lines=50, dead_bytes=10**9)) as log:
        for i in range(400):
            name = f"job{i % 37}"
            if i % 3 == 2:
                log.delete(name)
                model.pop(name, None)
            else:
                log.put(name, f"{i}".encode() * (i % 7))
                model.pop(name, None)
                model[name] = f"{i}".encode() * (i % 7)
            assert log.count() == len(model)
        assert list(log.entries()) == list(model.items())
        # Compacted along the way: far fewer lines than the 400 written, none of them dead for long.
        assert len(lines(path)) - 1 < len(model) + 51
    with SealedLog(path, KEY, "journal") as again:
        assert list(again.entries()) == list(model.items())


def test_a_big_dead_entry_triggers_compaction_by_bytes(tmp_path: Path) -> None:
    path = tmp_path / "outbox.log"
    with SealedLog(path, KEY, "outbox", compaction=Compaction(dead_lines=10**9, dead_bytes=100_000)) as log:
        log.put("small", b"s")
        log.put("big", b"b" * 200_000)
        log.delete("big")
        assert path.stat().st_size < 1000 and list(log.entries()) == [("small", b"s")]


def test_a_compaction_that_fails_leaves_the_change_and_is_tried_again_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.log"
    real_open = os.open
    full = [True]

    def open_(file: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        if full[0] and str(file).endswith(".tmp"):
            raise OSError(28, "No space left on device")  # a compaction's temp file on a full disk
        return real_open(file, flags, mode)

    with SealedLog(path, KEY, "journal", compaction=Compaction(dead_lines=10, dead_bytes=10**9)) as log:
        monkeypatch.setattr(os, "open", open_)
        for i in range(15):
            log.put(f"e{i}", b"x")
            log.delete(f"e{i}")  # every change stands although its compaction failed
        log.put("live", b"kept")
        assert len(lines(path)) == 1 + 31 and list(log.entries()) == [("live", b"kept")]
        full[0] = False
        for i in range(10):
            log.delete(f"none{i}")
            log.put(f"n{i}", b"y")
            log.delete(f"n{i}")
        assert len(lines(path)) < 1 + 20  # tried again once as many dead lines piled up, and done
    assert contents(path) == {"live": b"kept"}


CRASH = """
import os, sys
from pathlib import Path
from hardening.sealedlog import Compaction, SealedLog
path, step = Path(sys.argv[1]), sys.argv[2]
log = SealedLog(path, bytes(range(32)), "journal", compaction=Compaction(10**9, 10**12))
for i in range(20):
    log.put(f"e{i}", b"%d" % i)
for i in range(0, 20, 2):
    log.delete(f"e{i}")
real_replace, real_fsync = os.replace, os.fsync
def replace(src, dst):
    if step == "before-rename":
        os._exit(9)
    real_replace(src, dst)
    if step == "after-rename":
        os._exit(9)  # the directory's fsync never ran
def fsync(fd):
    real_fsync(fd)
    if step == "temp-written":
        os._exit(9)  # the temp file is whole and fsync'd, not renamed
os.replace, os.fsync = replace, fsync
log.compact()
os._exit(0)
"""


@pytest.mark.parametrize("step", ["temp-written", "before-rename", "after-rename", "done"])
def test_a_crash_at_any_step_of_a_compaction_keeps_exactly_the_live_entries(
    tmp_path: Path, step: str
) -> None:
    path = tmp_path / "journal.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, "-c", CRASH, str(path), step], env=env, timeout=60, check=False)
    assert proc.returncode == (0 if step == "done" else 9)
    live = {f"e{i}": b"%d" % i for i in range(1, 20, 2)}
    assert contents(path) == live
    with SealedLog(path, KEY, "journal") as log:  # the writer's open removes an interrupted temp file
        assert dict(log.entries()) == live
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.log", "journal.log.lock"]
    compacted = step in ("after-rename", "done")
    assert (len(lines(path)) == 1 + len(live)) == compacted


FULL_DISK = """
import os, resource, signal, sys
from pathlib import Path
from hardening.sealedlog import SealedLog
path = Path(sys.argv[1])
log = SealedLog(path, bytes(range(32)), "journal")
log.put("before", b"kept")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 1000, resource.RLIM_INFINITY))
try:
    log.put("too-big", b"x" * 400_000)  # past the zeros ahead: filling more fails with EFBIG
except OSError:
    print("refused")
log.put("after", b"fits")
"""


def test_a_write_that_fails_halfway_leaves_no_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(path)], env=env, timeout=60, capture_output=True, check=True
    )
    assert proc.stdout.strip() == b"refused"
    assert contents(path) == {"before": b"kept", "after": b"fits"}


def counting(calls: list[int], real: Callable[[int], None]) -> Callable[[int], None]:
    def sync(fd: int) -> None:
        calls.append(fd)
        real(fd)

    return sync


def test_concurrent_durable_puts_share_data_syncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(os, "fdatasync", counting(calls, os.fdatasync))
    log = SealedLog(tmp_path / "journal.log", KEY, "journal", compaction=NEVER)
    done: list[tuple[int, int]] = []
    guard = threading.Lock()
    original = log.sync

    def sync(upto: int | None = None) -> None:
        original(upto)
        with guard:
            done.append((upto or 0, log.durable_upto()))

    monkeypatch.setattr(log, "sync", sync)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: log.put(f"e{i}", b"x" * 200), range(400)))
    assert len(done) == 400 and all(synced >= mine for mine, synced in done)
    assert 0 < len(calls) < 400, f"{len(calls)} data syncs for 400 concurrent puts"
    assert contents(tmp_path / "journal.log").keys() == {f"e{i}" for i in range(400)}
    log.close()


def test_one_sync_per_durable_change_and_none_for_a_lazy_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(os, "fdatasync", counting(calls, os.fdatasync))
    with SealedLog(tmp_path / "journal.log", KEY, "journal", compaction=NEVER) as log:
        log.put("a", b"1")
        assert len(calls) == 1
        log.delete("a")  # lazy by default
        log.put("b", b"2", durable=False)
        assert len(calls) == 1
        log.settle()
        assert len(calls) == 2
        log.settle()  # nothing new: no sync
        log.delete("a", durable=True)  # already gone, already durable
        assert len(calls) == 2


def test_names_are_checked_and_oversized_lines_refused(tmp_path: Path) -> None:
    with SealedLog(tmp_path / "journal.log", KEY, "journal") as log:
        for bad in ("", "../x", "a b", "a\nb", "x" * 129):
            with pytest.raises(ValueError, match="not allowed"):
                log.put(bad, b"")
    # The reader takes at most a line's cap from the file, never the whole of an over-long line.
    import io

    with pytest.raises(fmt.LineError, match="longer than the cap"):
        list(fmt.read_lines(io.BytesIO(b"a\n" + b"x" * 50 + b"\n"), cap=20))
    assert list(fmt.read_lines(io.BytesIO(b"a\nb\nto"), cap=20)) == [(0, b"a\n"), (2, b"b\n")]
    # A torn last line longer than the cap is not a torn write (no line is written that long).
    with pytest.raises(fmt.LineError):
        list(fmt.read_lines(io.BytesIO(b"a\n" + b"x" * 50), cap=20))
    assert fmt.MAX_LINE_BYTES > 4 * fmt.MAX_DATA_BYTES // 3  # a put of the largest entry still reads back


def test_a_line_a_crash_left_unwritten_ends_the_log_and_what_follows_it_is_cut(tmp_path: Path) -> None:
    # Lines after the last sync may reach the disk in any order: here line 6 did and line 5 did not
    # (its bytes still the zeros written ahead of it).
    path = tmp_path / "journal.log"
    expected = filled(path, n=7)
    content = lines(path)
    content[6] = bytes(len(content[6]))  # header, e0..e4, then e5 unwritten, then e6
    write_lines(path, content)
    kept = {k: v for k, v in expected.items() if k not in ("e5", "e6")}
    assert contents(path) == kept  # a reader stops at the zeros
    with SealedLog(path, KEY, "journal", compaction=NEVER) as log:
        assert dict(log.entries()) == kept
        assert content[7] not in path.read_bytes()  # e6's stray bytes are cut off at the open
        log.put("next", b"after the crash")
    assert contents(path) == {**kept, "next": b"after the crash"}


def test_most_lines_go_into_space_the_file_already_has(tmp_path: Path) -> None:
    # A sync of a line that changes no size is the cheaper kind: the file grows only every ZERO_AHEAD.
    path = tmp_path / "journal.log"
    sizes = []
    with SealedLog(path, KEY, "journal", compaction=NEVER) as log:
        for i in range(200):
            log.put(f"e{i}", b"x" * 500)
            sizes.append(path.stat().st_size)
    assert len(set(sizes)) <= 1 + 200 * 700 // ZERO_AHEAD, sorted(set(sizes))
    assert contents(path) == {f"e{i}": b"x" * 500 for i in range(200)}
