"""What build/midbox.spec leaves out of the binary for size (issue 19) is not needed by what ships.

Each check runs in a fresh interpreter in which the left-out modules cannot be imported (as in the
binary), so a library or midbox module that starts needing one fails here, on the source, and not
only in a frozen build."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.support.cli import ROOT, child_env

# As in the spec's EXCLUDES; importlib.metadata, zipfile and csv are left out too, but paramiko needs
# them when run from source (the binary compiles its version in), so the checks that import paramiko
# do not block them.
PICKLE_GROUP = ("pickle", "_pickle", "_compat_pickle", "pprint", "logging.handlers", "tracemalloc", "getopt")
METADATA_GROUP = (
    "importlib.metadata",
    "zipfile",
    "csv",
    "_csv",
    "importlib.readers",
    "importlib.resources.readers",
)


def _run_without(blocked: tuple[str, ...], code: str) -> subprocess.CompletedProcess[str]:
    prelude = f"import sys\nfor _n in {blocked!r}:\n    assert _n not in sys.modules, _n\n    sys.modules[_n] = None\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        env=child_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_block_works() -> None:
    # The checks below would pass vacuously if blocking did not make the import fail.
    done = _run_without(("pickle",), "import pickle\n")
    assert done.returncode != 0 and "import of pickle halted" in done.stderr


def test_httpx_encodes_and_decodes_non_ascii_hosts_without_idnas_uts46_table() -> None:
    done = _run_without(
        (*PICKLE_GROUP, *METADATA_GROUP, "idna.uts46data"),
        """
        import httpx, idna
        assert httpx.URL("https://Bücher.example/x").raw_host == b"xn--bcher-kva.example"
        assert httpx.URL("https://xn--bcher-kva.example/").host == "bücher.example"
        try:
            idna.encode("Bücher.example", uts46=True)
        except ImportError:
            print("uts46 needs the table")
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "uts46 needs the table\n"  # so the two URLs above did not use it


def test_a_warning_with_a_source_prints_without_tracemalloc() -> None:
    done = _run_without(
        PICKLE_GROUP,
        """
        import warnings
        warnings.simplefilter("always")
        warnings.warn("file left open", ResourceWarning, source=object())
        print("went on")
        """,
    )
    assert done.returncode == 0, done.stderr
    assert "ResourceWarning: file left open" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == "went on\n"


def test_every_midbox_module_imports_without_pickle_and_logging_handlers() -> None:
    done = _run_without(
        PICKLE_GROUP,
        """
        import importlib, os, pkgutil
        skip = ("winacl", "winscm", "winservice", "dpapi", "__main__") if os.name != "nt" else ("__main__",)
        count = 0
        for package in ("hardening", "appliance"):
            for info in pkgutil.walk_packages(importlib.import_module(package).__path__, prefix=package + "."):
                if not any(part in info.name for part in skip):
                    importlib.import_module(info.name)
                    count += 1
        print(count)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 100
