"""Streaming verification of the audit chain against zero or more signed checkpoints.

Memory is bounded by one entry plus a small look-ahead window, whatever the size of the log.
Verdicts name the first problem in sequence order:

- TAMPERED: an entry's bytes changed (its hash no longer matches the link the next entry records,
  or a checkpoint's head), or a line is not an entry at all.
- MISSING / REORDERED: sequence numbers jump forward (entries or a whole file removed) or appear out
  of order or twice.
- TRUNCATED: a checkpoint attests more entries than the log holds, or a log that is no longer there.
- FORKED: two checkpoints of the same log and size attest different heads; both cannot be true.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import os
import signal
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hardening.audit import _entry, _files
from hardening.audit.checkpoint import Checkpoint
from hardening.audit.seal import VerificationKey, seal_mac

LOOKAHEAD = 64


class Verdict(enum.Enum):
    INTACT = "INTACT"
    TAMPERED = "TAMPERED"
    MISSING = "MISSING"
    REORDERED = "REORDERED"
    TRUNCATED = "TRUNCATED"
    FORKED = "FORKED"


@dataclass(frozen=True)
class VerifyReport:
    verdict: Verdict
    seq: int | None  # the sequence number of the first problem; None when intact
    detail: str
    entries: int = 0
    files: int = 0
    log_id: str | None = None
    head: str | None = None
    checkpoints: int = 0
    ignored_tail_bytes: int = 0
    sealed: int | None = None  # entries covered by a verified forward-secure seal (None: no seal key given)

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.INTACT

    def line(self) -> str:
        where = "" if self.seq is None else f" at seq {self.seq}"
        return f"{self.verdict.value}{where}: {self.detail}"


class _Lines:
    """An iterator over lines with a bounded look-ahead buffer."""

    def __init__(self, source: Iterator[_files.Line]) -> None:
        self._source = source
        self._buffer: deque[_files.Line] = deque()

    def next(self) -> _files.Line | None:
        if self._buffer:
            return self._buffer.popleft()
        return next(self._source, None)

    def peek(self, count: int) -> list[_files.Line]:
        while len(self._buffer) < count:
            item = next(self._source, None)
            if item is None:
                break
            self._buffer.append(item)
        return list(self._buffer)[:count]


def _parse(line: _files.Line) -> _entry.Entry | None:
    if not line.complete:
        return None
    try:
        return _entry.parse_entry(line.raw)
    except _entry.EntryFormatError:
        return None


def _where(line: _files.Line) -> str:
    # Built only for a verdict: formatting it for every entry was a tenth of the run time.
    return f"{line.path.name} line {line.number}"


def find_forks(checkpoints: Sequence[Checkpoint]) -> VerifyReport | None:
    seen: dict[tuple[str, int], Checkpoint] = {}
    for cp in sorted(checkpoints, key=lambda c: c.size):
        other = seen.setdefault((cp.log_id, cp.size), cp)
        if other.head != cp.head:
            return VerifyReport(
                Verdict.FORKED,
                cp.last_seq,
                f"checkpoints of {other.time} and {cp.time} both attest {cp.size} entries of log {cp.log_id} "
                f"with different heads; at most one history is true",
                checkpoints=len(checkpoints),
            )
    return None


def verify_log(
    directory: Path,
    checkpoints: Sequence[Checkpoint] = (),
    max_entry_bytes: int = 65_536,
    seal_key: VerificationKey | None = None,
    *,
    split: bool = False,
) -> VerifyReport:
    """Stream every file of the log in ``directory`` and check the chain, checkpoints and seals.

    ``split``: check the later files in a forked process at the same time (see ``_verify_split``); only
    for a caller with no other thread, as the ``audit verify`` command. The report is the same either way.
    """
    fork = find_forks(checkpoints)
    if fork is not None:
        return fork
    if split:
        report = _verify_split(directory, checkpoints, max_entry_bytes, seal_key)
        if report is not None:
            return report
    return _Verifier(directory, checkpoints, max_entry_bytes, seal_key).run()


SPLIT_MIN_FILES = 2


def split_point(sizes: Sequence[int]) -> int:
    """How many of the files (by their sizes, in order) the earlier half takes: about half the bytes,
    at least one file, and at least one left for the later half."""
    half, total = sum(sizes) / 2, 0
    for i, size in enumerate(sizes[:-1]):
        total += size
        if total >= half:
            return i + 1
    return len(sizes) - 1


def _verify_split(
    directory: Path,
    checkpoints: Sequence[Checkpoint],
    max_entry_bytes: int,
    seal_key: VerificationKey | None,
) -> VerifyReport | None:
    """The log checked in two halves at once, on two cores: the earlier files here, the later ones in a
    forked child that takes its first entry's seq and link as given. The child's word is taken only for
    an intact log: both halves intact and joined (the child's first entry links to this half's last, its
    seals continue this half's epochs). Past an intact earlier half, a problem is found by this half's
    check going on through the later files, line for line as the one pass would, so the earlier half is
    not read twice. A problem in the earlier half returns None, and the caller checks the whole log in
    one pass, which names the first problem exactly as always. Memory stays one block per process."""
    if not hasattr(os, "fork"):
        return None
    paths = [p for _, p in _files.log_files(directory)]
    if len(paths) < SPLIT_MIN_FILES:
        return None
    cut = split_point([p.stat().st_size for p in paths])
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller
        code = 1
        try:
            os.close(read_end)
            later = _Verifier(directory, checkpoints, max_entry_bytes, seal_key, paths=paths[cut:])
            summary = later.run_resumed()
            with os.fdopen(write_end, "wb") as out:
                out.write(json.dumps(summary).encode("ascii"))
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    answered = False
    with os.fdopen(read_end, "rb") as pipe:
        try:
            earlier = _Verifier(
                directory, checkpoints, max_entry_bytes, seal_key, paths=paths[:cut], final=False
            )
            if earlier.check_lines() is not None:
                # The one pass names it: how a problem is told (an entry changed, or the next one's link)
                # may look at lines past the cut, which this half cannot see.
                return None
            data = pipe.read(4096)  # a few hundred bytes, then the child's end closes
            answered = True
        finally:
            if not answered:  # a problem or an exception here: the child's work is not wanted
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    try:
        report = earlier.joined(json.loads(data))
    except ValueError:
        report = None
    return report if report is not None else earlier.go_on(paths[cut:])


class _Verifier:
    def __init__(
        self,
        directory: Path,
        checkpoints: Sequence[Checkpoint],
        max_entry_bytes: int,
        seal_key: VerificationKey | None,
        *,
        paths: Sequence[Path] | None = None,
        final: bool = True,
    ) -> None:
        self.directory = directory
        self.paths = paths  # None: every file of the log
        self.final = final  # whether these files end the log (else a last line with no newline is a problem)
        self.seal_key = seal_key
        self.seal_epoch = 0
        self.resumed = False  # the later half of a split check: its first entry's seq and link taken as given
        self.first_epoch: int | None = None  # a resumed half's first seal's epoch
        self.seal_cache: tuple[int, bytes] | None = None
        self.sealed = 0
        self.checkpoints = checkpoints
        self.files = len(_files.log_files(directory))
        self.max_entry_bytes = max_entry_bytes
        self.fast = False  # whether pending() may take ordinary entries itself (see run)
        self.lines = _Lines(self.pending())
        self.expected = 0
        self.prev = _entry.GENESIS_PREV
        self.prev_hex = self.prev.hex()
        self.log_id: str | None = None
        self.wanted: dict[int, list[Checkpoint]] = {}
        self.attested = 0  # entries covered by a checkpoint that matched
        self.ignored = 0

    def report(self, verdict: Verdict, seq: int | None, detail: str) -> VerifyReport:
        return VerifyReport(
            verdict,
            seq,
            detail,
            entries=self.expected,
            files=self.files,
            log_id=self.log_id,
            head=self.prev.hex() if self.expected else None,
            checkpoints=len(self.checkpoints),
            ignored_tail_bytes=self.ignored,
            sealed=self.sealed if self.seal_key is not None else None,
        )

    def run(self) -> VerifyReport:
        problem = self.check_lines()
        return problem if problem is not None else self.finish()

    def check_lines(self) -> VerifyReport | None:
        """Every line, in order; the first problem, or None. ``finish`` then checks the log's end."""
        # Ordinary entries are taken by pending() as it reads them; only the others come here. While one
        # of those is being checked, fast is off, so a look-ahead cannot move the chain state under it.
        while (line := self.lines.next()) is not None:
            self.fast = False
            if not line.complete and not line.oversized and self.final and not self.lines.peek(1):
                # The very last line has no newline: a write in progress or a crash. Not counted.
                self.ignored = len(line.raw)
                break
            entry = _parse(line)
            if entry is None:
                return self.report(
                    Verdict.TAMPERED, self.expected, f"{_where(line)} is not a valid audit entry"
                )
            problem = self.check(entry, line)
            if problem is not None:
                return problem
            self.fast = True
        return None

    def run_resumed(self) -> dict[str, object]:
        """The later half of a split check (in the forked child), from its first entry's seq and link as
        given, to the log's end; what ``joined`` needs to tie it to the earlier half."""
        head = self.lines.peek(1)
        entry = _parse(head[0]) if head else None
        if entry is None or entry.seq == 0:
            return {"ok": False}
        self.resumed = True
        self.expected, self.prev, self.prev_hex = entry.seq, entry.prev, entry.prev.hex()
        self.attested = entry.seq
        for cp in self.checkpoints:  # their log's id is checked by the earlier half, at the genesis
            self.wanted.setdefault(cp.size, []).append(cp)
        report = self.run()
        return {
            "ok": report.ok,
            "start": entry.seq,
            "start_prev": entry.prev.hex(),
            "end": self.expected,
            "head": self.prev_hex,
            "first_epoch": self.first_epoch,
            "epoch": self.seal_epoch,
            "sealed": self.sealed,
            "ignored": self.ignored,
        }

    def joined(self, later: object) -> VerifyReport | None:
        """The earlier half (checked, intact) and the later half's summary as one log's report, if the
        later half is intact and follows on: starts at the next seq, links to this half's last entry,
        continues its seal epochs. None otherwise (the caller checks the whole log in one pass)."""
        if not isinstance(later, dict) or later.get("ok") is not True:
            return None
        end, head, ignored = later.get("end"), later.get("head"), later.get("ignored")
        if later.get("start") != self.expected or later.get("start_prev") != self.prev_hex:
            return None
        if type(end) is not int or type(ignored) is not int or not isinstance(head, str):
            return None
        if not _entry.HEX64.fullmatch(head):
            return None
        if self.seal_key is not None and later.get("first_epoch") is not None:
            epoch, sealed = later.get("epoch"), later.get("sealed")
            if later["first_epoch"] != self.seal_epoch or type(epoch) is not int or type(sealed) is not int:
                return None
            self.seal_epoch, self.sealed = epoch, sealed
        self.expected, self.prev, self.prev_hex, self.ignored = end, bytes.fromhex(head), head, ignored
        return self.finish()

    def go_on(self, paths: Sequence[Path]) -> VerifyReport:
        """After an intact earlier half, check ``paths`` (the files after it) from this state to the log's
        end: the rest of the one pass, line for line."""
        self.paths, self.final = paths, True
        self.lines = _Lines(self.pending())
        return self.run()

    def pending(self) -> Iterator[_files.Line]:
        """The lines that need the general path: all of them unless fast, else those take() leaves."""
        for path, first, complete, odd in _files.iter_blocks(
            self.directory, self.max_entry_bytes, paths=self.paths
        ):
            i = 0
            while i < len(complete):
                if self.fast:
                    i = self.take(complete, i)
                    if i == len(complete):
                        break
                yield _files.Line(path, first + i, complete[i], True)
                i += 1
            if odd is not None:
                yield odd

    def take(self, lines: list[bytes], i: int) -> int:
        """Take the ordinary entries of ``lines`` from ``i`` on in one tight loop; return where it stopped.

        An ordinary entry is the next one as written: in sequence, linked, not a seal, not at a checkpoint's
        size, its fields one JSON object that ends the line. Anything else (the genesis, a seal, any problem)
        stops the loop untouched and goes through parse_entry and check, which decide exactly as they would
        for that line. So this only spares the million ordinary entries of a large log the general path's
        objects; it reads them with the same head pattern and the same JSON scanner. Locals, not
        attributes, because this loop is most of the time of ``audit verify``.
        """
        head, scan, chain = _entry.HEAD_TEXT.match, _entry.SCAN, hashlib.sha256(_entry.DOMAIN)
        prev, prev_hex, expected, wanted = self.prev, self.prev_hex, self.expected, self.wanted
        if expected == 0:  # the genesis entry takes the general path
            return i
        end = len(lines)
        while i < end:
            raw = lines[i]
            if not raw.isascii():
                break
            text = raw.decode("ascii")
            m = head(text)
            if m is None or m[3] != prev_hex or m[4] == "audit.seal" or int(m[1]) != expected:
                break
            if expected + 1 in wanted:
                break
            try:
                fields, stop = scan(text, m.end())
            except (ValueError, StopIteration, RecursionError):
                break
            if stop != len(text) - 1 or text[stop] != "}" or type(fields) is not dict:
                break
            h = chain.copy()  # chain_hash, without building DOMAIN + prev + raw
            h.update(prev)
            h.update(raw)
            prev = h.digest()
            prev_hex = prev.hex()
            expected += 1
            i += 1
        self.prev, self.prev_hex, self.expected = prev, prev_hex, expected
        return i

    def link(self, entry_hash: bytes) -> None:
        self.prev = entry_hash
        self.prev_hex = entry_hash.hex()
        self.expected += 1

    def check(self, entry: _entry.Entry, line: _files.Line) -> VerifyReport | None:
        e = self.expected
        linked = entry.prev == self.prev
        if linked and entry.seq != e:
            return self.report(
                Verdict.TAMPERED, e, f"{_where(line)}: the entry chains correctly but its seq was changed"
            )
        if not linked:
            return self.unlinked(entry, line)
        if e == 0:
            problem = self.genesis(entry, line)
            if problem is not None:
                return problem
        if entry.event == "audit.seal" and self.seal_key is not None:
            problem = self.check_seal(entry, self.seal_key)
            if problem is not None:
                return problem
        self.link(entry.hash)
        for cp in self.wanted.get(self.expected, ()):
            if cp.head != self.prev.hex():
                return self.report(
                    Verdict.TAMPERED,
                    e,
                    f"entries {self.attested}..{e} do not hash to the head signed in the checkpoint "
                    f"of {cp.time}; "
                    f"an entry in that range was changed or the chain was rewritten",
                )
            self.attested = self.expected
        return None

    def check_seal(self, entry: _entry.Entry, vkey: VerificationKey) -> VerifyReport | None:
        # Seals come in unbroken epoch order from 0; each covers every entry before it.
        f = entry.fields
        epoch, size, mac = f.get("epoch"), f.get("size"), f.get("mac")
        if self.resumed and self.first_epoch is None and type(epoch) is int and epoch >= 0:
            self.seal_epoch = self.first_epoch = epoch  # joined() checks that it follows the earlier half's
        if epoch != self.seal_epoch or size != entry.seq or not isinstance(mac, str):
            return self.report(
                Verdict.TAMPERED,
                entry.seq,
                f"the seal at entry {entry.seq} is not the seal of epoch {self.seal_epoch}; "
                f"seals were removed, replayed or forged",
            )
        key = vkey.key_at(self.seal_epoch, self.seal_cache)
        self.seal_cache = (self.seal_epoch, key)
        expected = seal_mac(key, vkey.log_id, self.seal_epoch, entry.seq, self.prev)
        # compare_digest raises TypeError on non-ASCII str; an edited MAC is a verdict, not a crash.
        if not (mac.isascii() and hmac.compare_digest(mac, expected)):
            return self.report(
                Verdict.TAMPERED,
                entry.seq,
                f"entries {self.sealed}..{entry.seq - 1} do not match the seal of epoch {self.seal_epoch}; "
                f"they were changed after they were sealed",
            )
        self.seal_epoch += 1
        self.sealed = entry.seq
        return None

    def genesis(self, entry: _entry.Entry, line: _files.Line) -> VerifyReport | None:
        log_id = entry.fields.get("log_id")
        if entry.event != "audit.genesis" or not isinstance(log_id, str):
            return self.report(
                Verdict.TAMPERED, 0, f"{_where(line)}: the log does not begin with its genesis entry"
            )
        self.log_id = log_id
        if self.seal_key is not None and self.seal_key.log_id != log_id:
            return self.report(
                Verdict.TRUNCATED,
                0,
                f"the seal key belongs to log {self.seal_key.log_id}, which is gone; "
                f"the log present is a different one ({log_id})",
            )
        for cp in self.checkpoints:
            if cp.log_id != log_id:
                return self.report(
                    Verdict.TRUNCATED,
                    0,
                    f"the checkpoint of {cp.time} attests {cp.size} entries of log {cp.log_id}, "
                    f"which is gone; "
                    f"the log present is a different one ({log_id})",
                )
            self.wanted.setdefault(cp.size, []).append(cp)
        return None

    def unlinked(self, entry: _entry.Entry, line: _files.Line) -> VerifyReport:
        e = self.expected
        if entry.seq == e:
            if e == 0:
                return self.report(
                    Verdict.TAMPERED, 0, f"{_where(line)}: the first entry does not chain to the start"
                )
            # Either entry e-1 changed (then entry e is intact and the one after it still links to it)
            # or entry e's own link was changed.
            nxt = self.lines.peek(1)
            after = _parse(nxt[0]) if nxt else None
            if after is not None and after.prev == entry.hash:
                return self.report(
                    Verdict.TAMPERED,
                    e - 1,
                    f"entry {e - 1} was changed: it no longer matches the link in {_where(line)}",
                )
            return self.report(
                Verdict.TAMPERED, e, f"{_where(line)}: the entry's link to entry {e - 1} was changed"
            )
        if entry.seq < e:
            return self.report(
                Verdict.REORDERED,
                entry.seq,
                f"{_where(line)}: entry {entry.seq} appears again after entry {e - 1}",
            )
        ahead = (_parse(line) for line in self.lines.peek(LOOKAHEAD))
        if any(a is not None and e <= a.seq < entry.seq for a in ahead):
            return self.report(
                Verdict.REORDERED, e, f"{_where(line)}: entry {entry.seq} comes before entry {e}"
            )
        if e == 0:
            return self.report(
                Verdict.MISSING, 0, f"{_where(line)}: the log begins at entry {entry.seq}, not 0"
            )
        return self.report(
            Verdict.MISSING,
            e,
            f"{_where(line)}: entries {e}..{entry.seq - 1} are missing after entry {e - 1}",
        )

    def finish(self) -> VerifyReport:
        if self.expected == 0:
            if self.checkpoints:
                cp = max(self.checkpoints, key=lambda c: c.size)
                return self.report(
                    Verdict.TRUNCATED,
                    0,
                    f"the checkpoint of {cp.time} attests {cp.size} entries; the log is gone",
                )
            return self.report(Verdict.MISSING, 0, f"there is no audit log in {self.directory}")
        for cp in sorted(self.checkpoints, key=lambda c: c.size):
            if cp.size > self.expected:
                return self.report(
                    Verdict.TRUNCATED,
                    self.expected,
                    f"the checkpoint of {cp.time} attests {cp.size} entries; "
                    f"the log ends after {self.expected}",
                )
        note = f"; ignored an incomplete last line of {self.ignored} bytes" if self.ignored else ""
        if self.seal_key is not None:
            note += (
                f"; {self.sealed} entries sealed by {self.seal_epoch} seal(s), "
                f"{self.expected - self.sealed} later entries not sealed yet"
            )
        return self.report(
            Verdict.INTACT,
            None,
            f"{self.expected} entries in {self.files} file(s), "
            f"{len(self.checkpoints)} checkpoint(s) matched{note}",
        )
