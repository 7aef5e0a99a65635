"""The shortcuts of `audit verify` (block reads, the as-written parse, ordinary entries taken in one
step) decide exactly as the general path: same lines, same entries, same verdicts at the same place."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardening.audit import Verdict, verify_log
from hardening.audit._entry import EntryFormatError, _parse_as_written, _parse_strict, parse_entry
from hardening.audit._files import BLOCK, Line, iter_lines, log_files
from hardening.audit.verify import _Verifier

from .conftest import LINE_EDITS, draw_line_edit, lines_of, write_log


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    state = tmp_path_factory.mktemp("fast") / "state"
    write_log(state, 6).close()
    return lines_of(state)


def _strict_or_none(raw: bytes) -> object:
    try:
        return _parse_strict(raw)
    except EntryFormatError:
        return None


def test_written_lines_take_the_shortcut_with_the_strict_values(sample: list[bytes]) -> None:
    for raw in sample:
        fast = _parse_as_written(raw)
        assert fast is not None
        assert fast == _parse_strict(raw)


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_an_edited_line_is_read_the_same_by_both_parses(data: st.DataObject, sample: list[bytes]) -> None:
    raw = bytearray(data.draw(st.sampled_from(sample)))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw) - 1))
        how = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        byte = data.draw(st.sampled_from(b' "\\{}[],:0123456789-.eE\x00\x7f\x80afnrtu'))
        if how == "flip":
            raw[at] = byte
        elif how == "insert":
            raw.insert(at, byte)
        else:
            del raw[at]
    line = bytes(raw)
    fast = _parse_as_written(line)
    strict = _strict_or_none(line)
    # The shortcut may hand a line on to the strict parse, but never accept what it refuses or differ.
    assert fast is None or fast == strict
    assert (strict is None and _raises(line)) or parse_entry(line) == strict


def _raises(line: bytes) -> bool:
    try:
        parse_entry(line)
    except EntryFormatError:
        return True
    return False


def test_a_whitespace_variant_is_still_parsed_strictly(sample: list[bytes]) -> None:
    # Valid JSON the writer never emits: not the shortcut's shape, the strict parse still reads it.
    spaced = sample[1].replace(b'"seq":', b'"seq": ', 1)
    assert _parse_as_written(spaced) is None
    assert parse_entry(spaced).seq == 1


def _naive(directory: Path, max_line_bytes: int) -> list[Line]:
    out = []
    for _, path in log_files(directory):
        parts = path.read_bytes().split(b"\n")
        last = parts.pop()
        for n, raw in enumerate(parts, 1):
            if len(raw) > max_line_bytes + 1:
                out.append(Line(path, n, raw[: max_line_bytes + 2], False, True))
                break
            out.append(Line(path, n, raw, True))
        else:
            if last:
                out.append(Line(path, len(parts) + 1, last, False))
    return out


@pytest.mark.parametrize("block", [1, 7, 64, 1000, BLOCK])
def test_block_reads_give_the_lines_of_a_plain_split(tmp_path: Path, block: int) -> None:
    d = tmp_path / "audit"
    d.mkdir()
    (d / "audit-000001.log").write_bytes(b"a\n\nbbbb\n" + b"c" * 300 + b"\nddd")
    (d / "audit-000002.log").write_bytes(b"e" * 120 + b"\n" + b"f" * 5000 + b"\ng\n")
    (d / "audit-000003.log").write_bytes(b"h\n")
    assert list(iter_lines(d, 4096, block)) == _naive(d, 4096)
    assert list(iter_lines(d, 200, block)) == _naive(d, 200)


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # More than one read block, so entries straddle block boundaries.
    state = tmp_path_factory.mktemp("big") / "state"
    write_log(state, 1500).close()
    [(_, path)] = log_files(state / "audit")
    assert path.stat().st_size > 2 * BLOCK
    return path


def test_a_log_of_several_blocks_is_intact(big_log: Path) -> None:
    report = verify_log(big_log.parent)
    assert report.verdict is Verdict.INTACT and report.entries == 1501


@pytest.mark.parametrize("which", ["boundary", "middle", "last"])
def test_a_changed_entry_is_found_across_blocks(big_log: Path, tmp_path: Path, which: str) -> None:
    data = big_log.read_bytes()
    starts = [0, *(i + 1 for i in range(len(data) - 1) if data[i] == 0x0A)]
    seq = {
        "boundary": next(n for n, s in enumerate(starts) if s > BLOCK) - 1,  # spans the first boundary
        "middle": 700,
        "last": len(starts) - 1,
    }[which]
    at = data.index(b'"result_code":', starts[seq]) + len(b'"result_code":')
    edited = data[:at] + (b"7" if data[at : at + 1] != b"7" else b"8") + data[at + 1 :]
    d = tmp_path / "audit"
    d.mkdir()
    (d / big_log.name).write_bytes(edited)
    report = verify_log(d)
    if which == "last":
        # Nothing links to the last entry: its edit is valid JSON, so only a checkpoint or seal sees it.
        assert report.verdict is Verdict.INTACT
    else:
        assert (report.verdict, report.seq) == (Verdict.TAMPERED, seq)
        assert report.entries == seq + 1  # as the general path counts: up to the entry whose link broke


def test_a_broken_last_entry_is_not_an_entry(big_log: Path, tmp_path: Path) -> None:
    data = big_log.read_bytes()
    d = tmp_path / "audit"
    d.mkdir()
    (d / big_log.name).write_bytes(data[:-3] + b",\n")
    report = verify_log(d)
    assert (report.verdict, report.seq) == (Verdict.TAMPERED, 1500)
    assert "is not a valid audit entry" in report.detail


def _general_only(directory: Path) -> object:
    """verify_log with the tight loop switched off: every line through parse_entry and check."""
    original = _Verifier.take
    _Verifier.take = lambda self, lines, i: i  # type: ignore[method-assign]
    try:
        return verify_log(directory)
    finally:
        _Verifier.take = original  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def small_log(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    state = tmp_path_factory.mktemp("small") / "state"
    write_log(state, 30).close()
    return lines_of(state)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_the_tight_loop_and_the_general_path_give_the_same_report(
    data: st.DataObject, small_log: list[bytes]
) -> None:
    lines = list(small_log)
    for _ in range(data.draw(st.integers(1, 2))):
        draw_line_edit(data, lines, data.draw(st.sampled_from(LINE_EDITS)))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "audit"
        d.mkdir()
        (d / "audit-000001.log").write_bytes(b"".join(raw + b"\n" for raw in lines))
        assert verify_log(d) == _general_only(d)
