"""``verify_log(split=True)`` (the ``audit verify`` command) checks the later files in a forked child at
the same time. The child's word counts only for an intact log; a problem past the earlier half is found
by this process's own check going on as the one pass would, one in it by the one pass. Every report must be
the one-pass report, word for word, whatever was changed, removed or cut in whichever half."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardening.audit import (
    AuditOptions,
    Checkpoint,
    _files,
    load_or_create_signing_key,
    parse_checkpoint_xml,
    verify_log,
)
from hardening.audit._files import log_files
from hardening.audit.seal import export_verification_key, parse_verification_key
from hardening.audit.verify import _Verifier, split_point
from tests.support.cli import run_cli

from .conftest import LINE_EDITS, draw_line_edit, probe_fields, write_log

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the split check forks (POSIX)")

SMALL_FILES = AuditOptions(rotate_bytes=8192, max_entry_bytes=4096, seal_every_entries=7)


def _log(state: Path, entries: int = 120) -> tuple[Path, list[Checkpoint], bytes]:
    """A sealed log of several small files, with checkpoints at a third and at two thirds."""
    key = load_or_create_signing_key(state)
    audit = write_log(state, entries // 3, SMALL_FILES)
    checkpoints = [audit.checkpoint(key)]
    for i in range(entries // 3):
        audit.record("probe.finished", probe_fields(1000 + i))
    checkpoints.append(audit.checkpoint(key))
    for i in range(entries - 2 * (entries // 3)):
        audit.record("probe.finished", probe_fields(2000 + i))
    audit.close()
    return state / "audit", checkpoints, export_verification_key(state / "audit")


def _forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    made: list[int] = []
    real = os.fork

    def counting() -> int:
        pid = real()
        if pid:
            made.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", counting)
    return made


def test_an_intact_log_is_checked_in_two_halves_with_the_one_pass_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, checkpoints, exported = _log(tmp_path / "state")
    seal_key = parse_verification_key(exported)
    assert len(log_files(directory)) >= 4
    forks = _forks(monkeypatch)
    split = verify_log(directory, checkpoints, seal_key=seal_key, split=True)
    assert len(forks) == 1
    assert split.ok and split.checkpoints == 2 and split.sealed
    assert split == verify_log(directory, checkpoints, seal_key=seal_key)
    assert verify_log(directory, split=True) == verify_log(directory)  # without seals or checkpoints


def test_audit_checkpoint_signs_the_head_the_split_check_recomputed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    directory, _, _ = _log(state)
    forks = _forks(monkeypatch)
    done = run_cli("audit", "checkpoint", "--out", tmp_path / "cp.xml", "--state-dir", state)
    assert done.code == 0, done.err
    assert len(forks) == 1  # the later files were checked in a child, as ``audit verify`` does
    signed = parse_checkpoint_xml((tmp_path / "cp.xml").read_bytes())
    whole = verify_log(directory)
    assert (signed.size, signed.head) == (whole.entries, whole.head)


def test_one_file_is_checked_in_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_log(tmp_path / "state", 5).close()
    forks = _forks(monkeypatch)
    assert verify_log(tmp_path / "state" / "audit", split=True).ok
    assert forks == []


def _reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files this process reads (the forked child's reads are its own), once per time read."""
    read: list[str] = []
    me, real = os.getpid(), _files.iter_blocks

    def counting(*args: Any, **kwargs: Any) -> Iterator[tuple[Path, int, list[bytes], Any]]:
        last = None
        for block in real(*args, **kwargs):
            if os.getpid() == me and block[0] != last:
                read.append(block[0].name)
                last = block[0]
            yield block

    monkeypatch.setattr(_files, "iter_blocks", counting)
    return read


def test_a_problem_past_the_earlier_half_is_found_without_reading_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, checkpoints, exported = _log(tmp_path / "state")
    seal_key = parse_verification_key(exported)
    paths = [p for _, p in log_files(directory)]
    cut = split_point([p.stat().st_size for p in paths])
    pristine = {p: p.read_bytes() for p in paths}
    for victim in (paths[0], paths[-1]):  # in the earlier half, then in the later one
        for path, data in pristine.items():
            path.write_bytes(data)
        lines = pristine[victim].split(b"\n")
        at = next(i for i, line in enumerate(lines) if i > 0 and b'"port":22' in line)
        lines[at] = lines[at].replace(b'"port":22', b'"port":23')  # valid JSON still: its hash shows it
        victim.write_bytes(b"\n".join(lines))
        one_pass = verify_log(directory, checkpoints, seal_key=seal_key)
        assert one_pass.verdict.value == "TAMPERED"
        read = _reads(monkeypatch)
        assert verify_log(directory, checkpoints, seal_key=seal_key, split=True) == one_pass
        if victim == paths[0]:  # found in the earlier half: the one pass tells it, reading up to it again
            assert read == [paths[0].name] * 2
        else:  # every file once: the earlier half here, then on through the later files
            assert read == [p.name for p in paths], f"cut after {cut} files"
        monkeypatch.undo()


def test_a_child_that_fails_leaves_the_decision_to_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, checkpoints, exported = _log(tmp_path / "state")
    seal_key = parse_verification_key(exported)

    def broken(self: _Verifier) -> dict[str, object]:
        raise OSError("the child could not read its files")

    monkeypatch.setattr(_Verifier, "run_resumed", broken)
    assert verify_log(directory, checkpoints, seal_key=seal_key, split=True) == verify_log(
        directory, checkpoints, seal_key=seal_key
    )


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, bytes], list[Checkpoint], bytes]:
    state = tmp_path_factory.mktemp("split") / "state"
    directory, checkpoints, exported = _log(state)
    files = {path.name: path.read_bytes() for _, path in log_files(directory)}
    return files, checkpoints, exported


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_whatever_is_changed_the_split_report_is_the_one_pass_report(
    data: st.DataObject, pristine: tuple[dict[str, bytes], list[Checkpoint], bytes]
) -> None:
    files, checkpoints, exported = dict(pristine[0]), pristine[1], pristine[2]
    names = sorted(files)
    name = data.draw(st.sampled_from(names))
    lines = files[name].split(b"\n")[:-1]
    how = data.draw(st.sampled_from([*LINE_EDITS, "cut", "no-newline", "remove-file", "empty-file"]))
    if how in LINE_EDITS:
        draw_line_edit(data, lines, how)
        files[name] = b"".join(line + b"\n" for line in lines)
    elif how == "cut":
        files[name] = b"".join(line + b"\n" for line in lines[: data.draw(st.integers(0, len(lines) - 1))])
    elif how == "no-newline":
        files[name] = files[name][:-1]
    elif how == "remove-file":
        del files[name]
    else:
        files[name] = b""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "audit"
        directory.mkdir()
        for file_name, body in files.items():
            (directory / file_name).write_bytes(body)
        seal_key = parse_verification_key(exported)
        with_all = verify_log(directory, checkpoints, seal_key=seal_key, split=True)
        assert with_all == verify_log(directory, checkpoints, seal_key=seal_key)
        assert verify_log(directory, split=True) == verify_log(directory)


def _boundary(directory: Path) -> tuple[Path, Path]:
    """The earlier half's last file and the later half's first."""
    paths = [p for _, p in log_files(directory)]
    cut = split_point([p.stat().st_size for p in paths])
    return paths[cut - 1], paths[cut]


def test_a_changed_entry_just_before_the_split_is_found(tmp_path: Path) -> None:
    directory, checkpoints, exported = _log(tmp_path / "state")
    seal_key = parse_verification_key(exported)
    last_file, _ = _boundary(directory)
    lines = last_file.read_bytes().split(b"\n")[:-1]
    edited = lines[-1].replace(b'"port":22', b'"port":23')
    assert edited != lines[-1]  # valid JSON still: only the later half's first link shows it
    last_file.write_bytes(b"".join(line + b"\n" for line in [*lines[:-1], edited]))
    split = verify_log(directory, checkpoints, seal_key=seal_key, split=True)
    assert split.verdict.value == "TAMPERED"
    assert split == verify_log(directory, checkpoints, seal_key=seal_key)


def test_a_change_the_earlier_half_can_only_tell_by_looking_past_the_cut_is_told_as_one_pass_does(
    tmp_path: Path,
) -> None:
    directory, checkpoints, exported = _log(tmp_path / "state")
    seal_key = parse_verification_key(exported)
    last_file, _ = _boundary(directory)
    lines = last_file.read_bytes().split(b"\n")[:-1]
    at = next(i for i in range(len(lines) - 2, 0, -1) if b'"port":22' in lines[i])
    lines[at] = lines[at].replace(b'"port":22', b'"port":23')
    last_file.write_bytes(b"".join(line + b"\n" for line in lines))
    one_pass = verify_log(directory, checkpoints, seal_key=seal_key)
    # The next entry's link shows the change; which of the two changed, only the entry after it can say.
    assert one_pass.verdict.value == "TAMPERED" and "was changed: it no longer matches" in one_pass.detail
    assert verify_log(directory, checkpoints, seal_key=seal_key, split=True) == one_pass


def test_the_later_half_must_start_at_the_next_entry_link_to_it_and_continue_the_seals(
    tmp_path: Path,
) -> None:
    directory, _, exported = _log(tmp_path / "state")
    seal_key = parse_verification_key(exported)
    paths = [p for _, p in log_files(directory)]
    cut = split_point([p.stat().st_size for p in paths])
    earlier = _Verifier(directory, (), 65_536, seal_key, paths=paths[:cut], final=False)
    assert earlier.check_lines() is None
    later = _Verifier(directory, (), 65_536, seal_key, paths=paths[cut:]).run_resumed()
    assert later["ok"] is True and later["first_epoch"] is not None
    wrong = [
        {**later, "start": later["start"] + 1},  # type: ignore[operator]
        {**later, "start_prev": "0" * 64},
        {**later, "first_epoch": later["first_epoch"] + 1},  # type: ignore[operator]
        {**later, "ok": False},
        {**later, "head": "not hex"},
    ]
    for summary in wrong:
        probe = _Verifier(directory, (), 65_536, seal_key, paths=paths[:cut], final=False)
        assert probe.check_lines() is None
        assert probe.joined(summary) is None, summary
    report = earlier.joined(later)
    assert report is not None and report == verify_log(directory, seal_key=seal_key)
