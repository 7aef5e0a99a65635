"""The committed manifest of what ships: top-level Python packages and native files of the binary.

Top-level names, not every module: a new dependency or a new native library changes the manifest
and fails the build until someone updates it on purpose (``build/manifest update``); a new module
inside ``appliance`` does not. The full module list is written beside each binary for auditors.
"""

from __future__ import annotations

import re
from pathlib import Path

from midbox_build.frozen import FrozenEntry

# Never allowed in the appliance, whatever the manifest says.
FORBIDDEN = frozenset(
    {
        "devinstance",
        "tests",
        "pytest",
        "_pytest",
        "hypothesis",
        "mypy",
        "ruff",
        "bandit",
        "PyInstaller",
        "setuptools",
        "pkg_resources",
        "pip",
        "_distutils_hack",
        # The tests' SNMP oracle: the appliance speaks SNMP on its own codec (issue 19).
        "pysnmp",
        "pyasn1",
        # Left out for size (issue 19, build/README.md): no command reaches them. pickle (with _pickle,
        # _compat_pickle, pprint) came with logging.handlers and tracemalloc; zipfile and csv with
        # importlib.metadata (paramiko's version lookup, now a constant) and PyInstaller's inspect hook.
        "pickle",
        "_pickle",
        "_compat_pickle",
        "pprint",
        "tracemalloc",
        "zipfile",
        "csv",
        "_csv",
    }
)
# Modules (not whole packages) that are left out the same way; a submodule of one counts too.
FORBIDDEN_MODULES = frozenset({"logging.handlers", "importlib.metadata", "idna.uts46data"})
# Windows-only modules a Linux binary never reaches (each is imported only when sys.platform or os.name
# says Windows); the Windows binary keeps them.
FORBIDDEN_MODULES_LINUX = frozenset(
    {
        "paramiko._winapi",
        "paramiko.win_pageant",
        "paramiko.win_openssh",
        "ctypes.wintypes",
        "nturl2path",
        "platform",
    }
)

_EXT_SUFFIX = re.compile(r"(\.cpython-[^.]+|\.abi3)?\.(so|pyd)$")
_NATIVE = re.compile(r"\.(so(\.[0-9.]+)?|pyd|dll)$", re.IGNORECASE)
HEADER = (
    "# What the frozen binary contains: top-level Python packages (py), compiled extension modules\n"
    "# (ext), other native libraries (lib) and data (data). build/build fails when this differs from\n"
    "# the binary; after reviewing a change, update it with: build/manifest update\n"
)


def _top(dotted: str) -> str:
    return dotted.split(".", 1)[0]


def manifest_lines(entries: list[FrozenEntry]) -> list[str]:
    lines: set[str] = set()
    for e in entries:
        if e.kind == "module":
            lines.add(f"py {_top(e.name)}")
        elif e.kind == "binary" and _NATIVE.search(e.name):
            path = e.name
            if path.startswith("python3.") and "/lib-dynload/" in path:
                path = path.split("/lib-dynload/", 1)[1]
            if _EXT_SUFFIX.search(path):
                lines.add(f"ext {_top(_EXT_SUFFIX.sub('', path).replace('/', '.'))}")
            else:
                lines.add(f"lib {path.rsplit('/', 1)[-1]}")
        elif e.kind in ("binary", "data"):  # a Windows build stores data files as binaries too
            lines.add(f"data {e.name.split('/', 1)[0]}")
    return sorted(lines)


def forbidden_found(entries: list[FrozenEntry], *, windows: bool = False) -> list[str]:
    """What the binary must not contain: FORBIDDEN packages and FORBIDDEN_MODULES (for Linux, also
    FORBIDDEN_MODULES_LINUX)."""
    modules = FORBIDDEN_MODULES if windows else FORBIDDEN_MODULES | FORBIDDEN_MODULES_LINUX
    found = set()
    for e in entries:
        # modules: "pytest.main"; files: "pytest-9.2.0.dist-info/METADATA" or "pytest/x.so"; the
        # stdlib's extension modules: "python3.11/lib-dynload/_pickle.cpython-311-x86_64-linux-gnu.so"
        name = e.name.replace("\\", "/").split("/lib-dynload/", 1)[-1]
        first = name.replace("/", ".").split(".", 1)[0].split("-", 1)[0]
        if first in FORBIDDEN:
            found.add(first)
        if e.kind == "module":
            found.update(m for m in modules if e.name == m or e.name.startswith(f"{m}."))
    return sorted(found)


def read_manifest(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]


def write_manifest(path: Path, lines: list[str]) -> None:
    path.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")


def compare(expected: list[str], actual: list[str]) -> list[str]:
    """Human-readable differences: '+ x' is in the binary but not the manifest, '- x' the reverse."""
    exp, act = set(expected), set(actual)
    return [f"+ {x}" for x in sorted(act - exp)] + [f"- {x}" for x in sorted(exp - act)]
