"""``midbox audit show`` as a table: hardening reads the log into typed ``Run`` rows, this lays them out.

The layout is the CLI's business (column order, widths, the ``~`` cut); ``hardening.audit.show``
stays the reader, so a SIEM export or another front end can format the same rows its own way.
"""

from __future__ import annotations

from hardening.audit.show import Run

COLUMNS = ("time", "config_version", "target", "topic", "credential", "result", "duration_ms", "job")
HEADERS = ("TIME (UTC)", "CONFIG", "TARGET", "PROBE", "CREDENTIAL", "RESULT", "MS", "JOB")
WIDTHS = (23, 6, 24, 14, 14, 28, 7, 32)


def _str(value: object) -> str:
    return "" if value is None else str(value)


def table_row(values: tuple[str, ...], wide: bool = False) -> str:
    """Cells padded to the column widths; a longer value is cut with ``~``, or kept whole when ``wide``."""
    pairs = zip(values, WIDTHS, strict=True)
    cells = [v.ljust(w) if wide or len(v) <= w else v[: w - 1] + "~" for v, w in pairs]
    return " ".join(cells).rstrip()


def format_run(run: Run, wide: bool = False) -> str:
    target = run.target if run.port is None else f"{run.target}:{run.port}"
    d = run.as_dict()
    d["target"] = target
    d["time"] = run.time[:23]
    return table_row(tuple(_str(d[c]) for c in COLUMNS), wide)
