"""The benchmark command's harness (its figures are not asserted: they depend on the machine)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.bench import part_audit, run
from tests.bench.common import Row, Sizes
from tests.bench.report import machine, markdown, write_doc


def test_a_quick_part_runs_in_process_and_gives_every_row_it_promises(tmp_path: Path) -> None:
    rows = run.run_part("audit", Sizes(quick=True, runs=1, binary=None, work=tmp_path))
    assert [(r.group, r.name) for r in rows] == run.expected("audit")
    for r in rows:
        assert r.value is not None and r.value > 0 and not r.na, r
    assert rows[0].unit == "entries/s"


def test_a_row_a_part_did_not_give_is_shown_with_the_reason() -> None:
    got = [Row(part_audit.GROUP, part_audit.ROWS[1], 1.5, "s", runs=1)]
    rows = run.complete("audit", got, "timed out after 20 s")
    assert [r.name for r in rows] == list(part_audit.ROWS)
    assert rows[1].value == 1.5 and not rows[1].na
    assert rows[0].na == rows[2].na == "n/a: timed out after 20 s"
    table = markdown(rows)
    assert table.count("\n") == 2 + len(part_audit.ROWS) - 1
    assert "| 7 audit | verify time | 1.5 s |" in table


def test_a_part_past_its_limit_is_stopped_with_its_whole_process_group(tmp_path: Path) -> None:
    sizes = Sizes(quick=True, runs=1, binary=None, work=tmp_path)
    start = time.monotonic()
    rows, why = run.run_isolated("scaling", sizes, limit=0.5)  # it cannot even start its peers in time
    assert why.startswith("timed out after")
    assert rows == []
    assert time.monotonic() - start < 30
    left = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(tmp_path).encode() in (proc / "cmdline").read_bytes():
                left.append(proc.name)
        except OSError:
            continue  # gone meanwhile
    assert left == [], "the part's process group was left running"


def test_every_group_of_the_issue_has_its_part_and_rows() -> None:
    groups = {g for name in run.PARTS for g, _ in run.expected(name)}
    assert sorted(groups) == [f"{i} {n}" for i, n in enumerate(
        ("binary", "queue", "snmp", "ssh", "http", "tcp", "audit", "scaling"), 1)]  # fmt: skip


def test_the_document_names_the_machine_and_no_path(tmp_path: Path) -> None:
    info = machine()
    doc = tmp_path / "benchmarks.md"
    write_doc(doc, markdown([Row("7 audit", "verify time", 2.0, "s", runs=3)]), info, quick=False, runs=3)
    text = doc.read_text()
    for key in ("cpu", "cores", "ram", "kernel", "python"):
        assert info[key] in text
    assert "python -m tests.bench.run" in text
    assert str(tmp_path) not in text and "/work/" not in text and "/tmp/" not in text


def test_reuse_takes_the_other_parts_rows_from_an_earlier_run(tmp_path: Path) -> None:
    earlier = [Row("7 audit", "verify time", 9.0, "s"), Row("6 tcp", "connect sweep, 5 ports", 1.0, "s")]
    saved = tmp_path / "earlier.json"
    saved.write_text(json.dumps({"rows": [r.as_json() for r in earlier]}))
    fresh = [Row("6 tcp", "connect sweep, 5 ports", 2.0, "s")]
    rows = run.reused(saved, fresh, ["tcp"])
    assert [(r.group, r.value) for r in rows] == [("6 tcp", 2.0), ("7 audit", 9.0)]
