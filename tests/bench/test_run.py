"""The benchmark command's harness (its figures are not asserted: they depend on the machine)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bench import part_audit, part_size, part_ssh, run
from tests.bench.common import CpuSplit, Row, Sizes, cpu_split
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
    groups = [g for name in run.PARTS for g in dict.fromkeys(g for g, _ in run.expected(name))]
    assert groups == [f"{i} {n}" for i, n in enumerate(
        ("binary", "queue", "snmp", "ssh", "http", "tcp", "audit", "scaling", "policy", "push", "size"), 1)]  # fmt: skip


def test_run_is_the_one_entry_no_script_beside_it_duplicates_a_part() -> None:
    here = Path(run.__file__).parent
    assert sorted(p.name for p in here.glob("bench_*.py")) == []
    assert all(len(run.expected(name)) == len(set(run.expected(name))) for name in run.PARTS)


def test_the_policy_part_gives_its_decisions_and_a_trivial_jobs_cpu(tmp_path: Path) -> None:
    rows = run.run_part("policy", Sizes(quick=True, runs=1, binary=None, work=tmp_path))
    assert [(r.group, r.name) for r in rows] == run.expected("policy")
    for r in rows:
        assert r.value is not None and r.value > 0 and not r.na, r
    by_name = {r.name: r for r in rows}
    job_ms = by_name["appliance CPU per trivial job, end to end"].value
    decision = by_name["decision, HTTP GET, first time"].value
    assert job_ms is not None and decision is not None
    share = by_name["decision's share of a trivial job (HTTP GET, first time)"]
    assert share.unit == "%" and share.value == pytest.approx(decision / (job_ms * 1000) * 100)


def test_the_push_part_measures_each_push_until_it_is_in_force(tmp_path: Path) -> None:
    rows = run.run_part("push", Sizes(quick=True, runs=1, binary=None, work=tmp_path))
    assert [(r.group, r.name) for r in rows] == run.expected("push")
    short, default = rows
    assert short.value is not None and 0 < short.value < 5, short
    assert default.value is not None and 0 < default.value < 10, default


def test_the_size_part_without_a_binary_says_why_in_every_row(tmp_path: Path) -> None:
    rows = run.run_part("size", Sizes(quick=True, runs=1, binary=tmp_path / "absent", work=tmp_path))
    assert [(r.group, r.name) for r in rows] == run.expected("size")
    assert all(r.value is None and r.na.startswith("n/a: build first") for r in rows)


def test_the_size_part_charges_each_archive_entry_to_the_distribution_that_ships_it() -> None:
    assert part_size.owner("paramiko.transport") == "paramiko"
    assert part_size.owner("pysnmp/smi/mibs/SNMPv2-MIB.py") == "pysnmp"
    assert part_size.owner("cryptography-44.0.0.dist-info/RECORD") == "cryptography"
    assert part_size.owner("libcrypto.so.3") == part_size.OPENSSL
    assert part_size.owner("sniffio") == "anyio"
    assert part_size.owner("json.decoder") == part_size.CPYTHON
    assert part_size.owner("appliance.probes.ssh") == part_size.owner("hardening.audit") == "midbox"


def test_the_document_names_the_machine_and_no_path(tmp_path: Path) -> None:
    info = machine()
    doc = tmp_path / "benchmarks.md"
    write_doc(doc, markdown([Row("7 audit", "verify time", 2.0, "s", runs=3)]), info, quick=False, runs=3)
    text = doc.read_text()
    for key in ("cpu", "cores", "ram", "kernel", "python"):
        assert info[key] in text
    assert "python -m tests.bench.run" in text
    assert str(tmp_path) not in text and "/work/" not in text and "/tmp/" not in text
    for part in ("policy", "push", "size"):
        assert f"**{part}**" in text, f"the method notes do not describe the {part} part"


def test_a_document_with_reused_rows_says_which_run_each_comes_from(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    note = "the rows of policy from this run, the others from a run of 2026-01-01 00:00 UTC"
    write_doc(doc, markdown([]), machine(), quick=False, runs=3, note=note)
    assert f"3 runs per figure; {note};" in doc.read_text()


def test_reuse_takes_the_other_parts_rows_from_an_earlier_run(tmp_path: Path) -> None:
    earlier = [Row("7 audit", "verify time", 9.0, "s"), Row("6 tcp", "connect sweep, 5 ports", 1.0, "s")]
    saved = tmp_path / "earlier.json"
    saved.write_text(json.dumps({"rows": [r.as_json() for r in earlier]}))
    fresh = [Row("6 tcp", "connect sweep, 5 ports", 2.0, "s")]
    rows = run.reused(saved, fresh, ["tcp"])
    assert [(r.group, r.value) for r in rows] == [("6 tcp", 2.0), ("7 audit", 9.0)]


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_the_cpu_split_charges_this_process_its_children_and_the_machine_apart() -> None:
    spin = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"

    def both() -> None:
        _spin(0.3)
        subprocess.run([sys.executable, "-c", spin], check=True)

    took, cpu = cpu_split(both)
    assert cpu.own_s >= 0.25  # the spin in this process, not its child's
    assert cpu.children_s >= 0.25  # the waited-for child's spin, apart from ours
    assert cpu.machine_s >= 0.9 * (cpu.own_s + cpu.children_s)  # /proc/stat saw both (tick rounding aside)
    assert took >= 0.5


def test_the_ssh_floor_is_sshds_cpu_alone_over_every_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(part_ssh, "cpu_count", lambda: 2)
    ours = [(0.6, CpuSplit(own_s=0.2, children_s=0.0, machine_s=1.2)),
            (0.5, CpuSplit(own_s=0.1, children_s=0.0, machine_s=1.0))]  # fmt: skip
    theirs = [(3.0, CpuSplit(own_s=0.05, children_s=4.0, machine_s=5.5))]
    client, server, floor = part_ssh._cpu_rows(50, ours, theirs, 3.0, runs=2)
    assert client.value == pytest.approx(0.15 / 50 * 1000)  # the median of midbox's own CPU, per connection
    assert client.ratio == pytest.approx(0.15 / 4.0)  # against one ssh process's, its children
    assert server.value == pytest.approx(0.95 / 50 * 1000)  # the rest while midbox ran: 1.0 and 0.9
    assert "29 ms" in server.versus  # ssh's rest: 5.5 - 0.05 - 4.0 = 1.45 s over 50
    assert floor.value == pytest.approx(0.95 / 2)  # sshd's share alone, spread over the two cores
    assert floor.ratio == pytest.approx(0.95 / 2 / 3.0)
