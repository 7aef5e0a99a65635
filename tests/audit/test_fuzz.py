"""The parsers meet hostile bytes: only their own error type comes out, never a crash or a pass."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardening.audit import CheckpointError, Verdict, parse_checkpoint_xml, verify_log
from hardening.audit._entry import EntryFormatError, parse_entry
from hardening.audit._files import log_files

from .conftest import write_log

VALID = (
    b'<results probe_time="0" result_code="0"><result><checkpoint log_id="'
    + b"a" * 32
    + b'" size="3" head="'
    + b"b" * 64
    + b'" time="2026-11-25T06:00:00.000000Z" key_id="'
    + b"c" * 32
    + b'" signature="'
    + b"A" * 86
    + b'=="/></result></results>'
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_checkpoint_parser_on_random_bytes(data: bytes) -> None:
    with contextlib.suppress(CheckpointError):
        parse_checkpoint_xml(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(VALID) - 1), st.integers(1, 255))
def test_checkpoint_parser_on_mutations(pos: int, flip: int) -> None:
    mutated = bytearray(VALID)
    mutated[pos] ^= flip
    try:
        cp = parse_checkpoint_xml(bytes(mutated))
    except CheckpointError:
        return
    # A mutation that still parses changed a value or insignificant whitespace, never the structure.
    assert cp.size >= 1 and len(cp.signature) == 64


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_entry_parser_on_random_bytes(data: bytes) -> None:
    with contextlib.suppress(EntryFormatError):
        parse_entry(data)


def test_deeply_nested_line_is_an_entry_error() -> None:
    with pytest.raises(EntryFormatError):
        parse_entry(b"[" * 60_000)


@pytest.fixture(scope="module")
def log_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    state = tmp_path_factory.mktemp("fuzz") / "state"
    write_log(state, 8).close()
    return log_files(state / "audit")[0][1].read_bytes()


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_spliced_garbage_is_never_intact(
    data: st.DataObject, log_bytes: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    lines = log_bytes.splitlines(keepends=True)
    at = data.draw(st.integers(1, len(lines) - 1))
    junk = data.draw(st.binary(min_size=1, max_size=80))
    directory = tmp_path_factory.mktemp("spliced") / "audit"
    directory.mkdir()
    (directory / "audit-000001.log").write_bytes(b"".join([*lines[:at], junk + b"\n", *lines[at:]]))
    report = verify_log(directory)
    assert report.verdict is not Verdict.INTACT
