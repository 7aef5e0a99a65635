"""The build tools' own logic: manifest lines, forbidden modules, SBOM shape, lock file hygiene."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "build" / "tools"))
from midbox_build import manifest  # noqa: E402
from midbox_build.frozen import FrozenEntry  # noqa: E402
from midbox_build.sbom import build_sbom  # noqa: E402

ENTRIES = [
    FrozenEntry("module", "appliance.cli", ""),
    FrozenEntry("module", "cryptography.hazmat.primitives", ""),
    FrozenEntry("module", "json.decoder", ""),
    FrozenEntry("binary", "python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so", "a" * 64),
    FrozenEntry("binary", "cryptography/hazmat/bindings/_rust.abi3.so", "b" * 64),
    FrozenEntry("binary", "libssl.so.3", "c" * 64),
    FrozenEntry("data", "cryptography-50.0.2.dist-info/METADATA", "d" * 64),
]


def test_manifest_lines_are_top_level_and_sorted() -> None:
    assert manifest.manifest_lines(ENTRIES) == [
        "data cryptography-50.0.2.dist-info",
        "ext _ssl",
        "ext cryptography",
        "lib libssl.so.3",
        "py appliance",
        "py cryptography",
        "py json",
    ]


def test_windows_entries_classify_like_linux_ones() -> None:
    # A Windows build stores data files with the binary type code; they must not become "lib" lines.
    windows = [
        FrozenEntry("binary", "_ssl.pyd", "a" * 64),
        FrozenEntry("binary", "cryptography/hazmat/bindings/_rust.pyd", "b" * 64),
        FrozenEntry("binary", "_cffi_backend.cp311-win_amd64.pyd", "c" * 64),
        FrozenEntry("binary", "libssl-3.dll", "d" * 64),
        FrozenEntry("binary", "certifi/cacert.pem", "e" * 64),
        FrozenEntry("binary", "base_library.zip", "f" * 64),
        FrozenEntry("script", "pyiboot01_bootstrap", ""),
    ]
    assert manifest.manifest_lines(windows) == [
        "data base_library.zip",
        "data certifi",
        "ext _cffi_backend",
        "ext _ssl",
        "ext cryptography",
        "lib libssl-3.dll",
    ]


def test_dev_tools_are_found_in_modules_and_data() -> None:
    bad = [
        FrozenEntry("module", "devinstance.server", ""),
        FrozenEntry("data", "pytest-9.2.0.dist-info/METADATA", ""),
        FrozenEntry("module", "_pytest.main", ""),
    ]
    assert manifest.forbidden_found(ENTRIES + bad) == ["_pytest", "devinstance", "pytest"]
    assert manifest.forbidden_found(ENTRIES) == []


def test_compare_reports_both_directions() -> None:
    assert manifest.compare(["py a", "py b"], ["py b", "py c"]) == ["+ py c", "- py a"]


def test_spec_excludes_every_forbidden_package() -> None:
    spec = (REPO / "build" / "midbox.spec").read_text()
    missing = [name for name in manifest.FORBIDDEN if f'"{name}"' not in spec]
    assert missing == []


def test_sbom_is_cyclonedx_and_deterministic() -> None:
    kwargs = dict(
        binary_name="midbox-linux-x86_64",
        binary_sha256="e" * 64,
        version="0.1.0",
        commit="f" * 40,
        epoch=1_700_000_000,
    )
    first = build_sbom(ENTRIES, **kwargs)  # type: ignore[arg-type]
    assert json.dumps(first, sort_keys=True) == json.dumps(build_sbom(ENTRIES, **kwargs), sort_keys=True)  # type: ignore[arg-type]
    assert first["bomFormat"] == "CycloneDX" and first["specVersion"] == "1.5"
    assert first["metadata"]["timestamp"] == "2023-11-14T22:13:20Z"  # type: ignore[index]
    refs = [c["bom-ref"] for c in first["components"]]  # type: ignore[attr-defined]
    assert refs == sorted(refs)
    assert any(r.startswith("pkg:pypi/cryptography@") for r in refs)
    assert "file:libssl.so.3" in refs
    # build-only tools never appear, though they are installed where the SBOM is made
    assert not any(r.startswith(("pkg:pypi/pytest@", "pkg:pypi/setuptools@", "pkg:pypi/pip@")) for r in refs)


def _pins(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==([^ \\]+) \\$", path.read_text(), re.M))


def test_locks_pin_every_package_with_hashes() -> None:
    for lock in sorted((REPO / "build" / "lock").glob("requirements-*.txt")):
        text = lock.read_text()
        reqs = [ln for ln in text.splitlines() if ln and not ln.startswith((" ", "#"))]
        assert reqs, lock.name
        assert all(re.fullmatch(r"[a-z0-9][a-z0-9._-]*==\S+ \\", r) for r in reqs), lock.name
        assert text.count("--hash=sha256:") >= len(reqs), lock.name


def test_build_lock_agrees_with_runtime_lock() -> None:
    lock = REPO / "build" / "lock"
    for os_name, build in (
        ("linux", "requirements-build.txt"),
        ("windows", "requirements-build-windows.txt"),
    ):
        runtime, tools = _pins(lock / f"requirements-{os_name}.txt"), _pins(lock / build)
        assert {k: v for k, v in tools.items() if k in runtime} == {
            k: runtime[k] for k in tools if k in runtime
        }
        assert "pyinstaller" in tools and "pytest" not in tools


def test_the_wine_root_is_a_cache_outside_the_source_tree(tmp_path: Path) -> None:
    # Its prefix maps / as drive Z:; inside the checkout, pip install . walked the whole filesystem.
    from midbox_build.common import BuildError
    from midbox_build.wine import default_root, refuse_inside_source

    assert default_root({"HOME": "/home/op"}) == Path("/home/op/.cache/midbox-build/wine")
    assert default_root({"HOME": "/h", "XDG_CACHE_HOME": "/c"}) == Path("/c/midbox-build/wine")
    assert default_root({"MIDBOX_WINE_ROOT": "/w", "XDG_CACHE_HOME": "/c"}) == Path("/w")
    assert not default_root({"HOME": "/h"}).is_relative_to(REPO)
    with pytest.raises(BuildError, match="inside the source tree"):
        refuse_inside_source(REPO / "dist" / "wine")
    refuse_inside_source(tmp_path / "wine")


def test_left_out_modules_are_found_and_windows_keeps_its_own() -> None:
    back = [
        FrozenEntry("module", "logging.handlers", ""),
        FrozenEntry("module", "importlib.metadata._meta", ""),
        FrozenEntry("module", "pickle", ""),
        FrozenEntry("binary", "python3.11/lib-dynload/_pickle.cpython-311-x86_64-linux-gnu.so", ""),
        FrozenEntry("module", "paramiko.win_pageant", ""),
        FrozenEntry("module", "platform", ""),
    ]
    assert manifest.forbidden_found(ENTRIES + back) == [
        "_pickle", "importlib.metadata", "logging.handlers", "paramiko.win_pageant", "pickle", "platform"
    ]  # fmt: skip
    assert manifest.forbidden_found(ENTRIES + back, windows=True) == [
        "_pickle", "importlib.metadata", "logging.handlers", "pickle"
    ]  # fmt: skip
    # a module that only starts with a left-out name is not one
    assert manifest.forbidden_found([*ENTRIES, FrozenEntry("module", "logging.handlers_extra", "")]) == []


RACE_LINE = (
    "[PYI-256:ERROR] Security validation failure: failed to obtain executable path for originating "
    "onefile parent process!\n"
)


def test_only_the_bootloader_wine_race_is_recognised() -> None:
    from midbox_build.wine import is_bootloader_wine_race

    assert is_bootloader_wine_race(255, b"", RACE_LINE.encode())
    assert is_bootloader_wine_race(255, "", RACE_LINE.replace("executable path for", "information about"))
    assert not is_bootloader_wine_race(1, "", RACE_LINE)  # another exit code is midbox's own
    assert not is_bootloader_wine_race(255, "midbox 1.0\n", RACE_LINE)  # Python ran: never started twice
    assert not is_bootloader_wine_race(255, "", RACE_LINE + "Traceback (most recent call last):\n")
    other = RACE_LINE.replace("failed to obtain executable path for", "invalid")
    assert not is_bootloader_wine_race(255, "", other)  # a real parent mismatch is not retried


def _wrapped_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> Path:
    """A `wine` on PATH that runs ``script``, and the wrapper `build/wine wrap` writes for a program."""
    import os

    from midbox_build.wine import write_wrapper

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wine = bin_dir / "wine"
    wine.write_text("#!/bin/sh\n" + script, encoding="utf-8")
    wine.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    program = tmp_path / "midbox.exe"
    program.write_bytes(b"MZ")
    out = tmp_path / "midbox-wine"
    write_wrapper(tmp_path / "root", program, out)
    return out


def test_the_wrapper_starts_again_after_the_race_and_only_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    count = tmp_path / "starts"
    script = (
        f'echo x >> "{count}"\n'
        f'if [ "$(wc -l < "{count}")" -eq 1 ]; then printf \'%s\' "{RACE_LINE.strip()}" >&2; echo >&2; exit 255; fi\n'
        'echo "ran with $2"; exit 3\n'
    )
    wrapper = _wrapped_stand_in(tmp_path, monkeypatch, script)
    proc = subprocess.run([str(wrapper), "arg"], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (3, "ran with arg\n")
    assert "starting it again" in proc.stderr
    assert count.read_text().count("x") == 2

    count.unlink()  # a failure of midbox's own (exit 3 here, exit 255 with output) is never run twice
    script = f'echo x >> "{count}"\necho out; echo "{RACE_LINE.strip()}" >&2; exit 255\n'
    (tmp_path / "b").mkdir()
    wrapper = _wrapped_stand_in(tmp_path / "b", monkeypatch, script)
    proc = subprocess.run([str(wrapper)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 255
    assert count.read_text().count("x") == 1
