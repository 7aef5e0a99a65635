"""Apply each security mutant named in issue 14, one at a time, and check that its tests catch it.

Usage, from the repository root: ``python -m tests.mutants`` (about a minute; not part of CI).

Each mutant flips one security decision in a copy of the tree (the checkout is never edited), then
runs the tests meant to protect that decision there: first unmutated (they must pass), then mutated
(they must fail). Exit 0 only if every mutant is caught. ``--only NAME`` runs one mutant.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPY = ("appliance", "hardening", "devinstance", "tests", "pyproject.toml")


@dataclass(frozen=True)
class Mutant:
    name: str
    claim: str
    path: str
    edits: tuple[tuple[str, str], ...]  # (original text, mutated text); each original occurs exactly once
    tests: tuple[str, ...]  # pytest arguments selecting the tests that must catch it


MUTANTS = (
    Mutant(
        "first-address-only",
        "every resolved address must pass the policy",
        "appliance/probes/targets.py",
        (("    for address in addresses:\n", "    for address in addresses[:1]:\n"),),
        ("tests/probes/test_every_address.py",),
    ),
    Mutant(
        "redirect-hops-unchecked",
        "redirects are re-resolved and re-checked hop by hop",
        "appliance/probes/http.py",
        (
            (
                "            addresses, rule = await checked_target(\n"
                '                hop, probe="http", host=url.host, port=port, credential=credential\n'
                "            )\n",
                "            if _hop == 0:\n"
                "                addresses, rule = await checked_target(\n"
                '                    hop, probe="http", host=url.host, port=port, credential=credential\n'
                "                )\n"
                "            else:\n"
                "                addresses = await ctx.resolver(url.host)\n",
            ),
        ),
        ("tests/probes/test_http.py", "-k", "redirect"),
    ),
    Mutant(
        "authorization-on-every-hop",
        "credentials never follow a redirect to another origin",
        "appliance/probes/http.py",
        (
            (
                "            if auth_header and (url.scheme, url.host, url.port) == origin:\n",
                "            if auth_header:\n",
            ),
        ),
        ("tests/probes/test_http.py", "-k", "credentials"),
    ),
    Mutant(
        "http-resolves-the-name-again",
        "the probe connects to the checked address, not to the name",
        "appliance/probes/http.py",
        (('        target = url.copy_with(host=literal.strip("[]"))\n', "        target = url\n"),),
        ("tests/probes/test_http.py", "-k", "name_reaches"),
    ),
    Mutant(
        "http-input-checks-removed",
        "user info refused, reserved headers refused (both at once)",
        "appliance/probes/http.py",
        (
            ("    if url.userinfo:\n", "    if False:\n"),
            ("            if key.lower() in _RESERVED_HEADERS:\n", "            if False:\n"),
        ),
        ("tests/probes/test_http.py", "-k", "user_info or reserved"),
    ),
    Mutant(
        "http-body-cap-removed",
        "a response body is cut at the cap, whatever its encoding",
        "appliance/probes/_httpbody.py",
        (("        if len(data) > room:\n", "        if False:\n"),),
        ("tests/probes/test_http.py", "-k", "cap"),
    ),
    Mutant(
        "resumed-work-answered-twice",
        "work already answered is not run again after a restart (has_response)",
        "appliance/runner.py",
        (
            (
                "                    and not await self._client.has_response(r.sys_id)\n",
                "                    # and not await self._client.has_response(r.sys_id)\n",
            ),
        ),
        ("tests/core/test_runner.py", "-k", "resumed"),
    ),
)


def copy_tree(into: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPY:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=ignore)
        else:
            shutil.copy2(source, into / name)


def apply(tree: Path, mutant: Mutant) -> None:
    path = tree / mutant.path
    text = path.read_text()
    for original, mutated in mutant.edits:
        if text.count(original) != 1:
            raise SystemExit(
                f"{mutant.name}: the line to mutate is not in {mutant.path} once; update tests/mutants.py"
            )
        text = text.replace(original, mutated)
    path.write_text(text)


def run_tests(tree: Path, mutant: Mutant) -> tuple[bool, float, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("MIDBOX_REQUIRE_ALL", None)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *mutant.tests],
        cwd=tree, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    return done.returncode == 0, time.monotonic() - started, lines[-1] if lines else done.stderr[-200:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=[m.name for m in MUTANTS])
    args = parser.parse_args()
    caught_all = True
    for mutant in MUTANTS:
        if args.only and mutant.name != args.only:
            continue
        with tempfile.TemporaryDirectory(prefix="midbox-mutant-") as scratch:
            tree = Path(scratch)
            copy_tree(tree)
            clean_ok, clean_s, clean_line = run_tests(tree, mutant)
            apply(tree, mutant)
            mutated_ok, mutated_s, mutated_line = run_tests(tree, mutant)
        caught = clean_ok and not mutated_ok
        caught_all &= caught
        print(f"{'CAUGHT' if caught else 'MISSED'}  {mutant.name}: {mutant.claim}")
        print(f"        unmutated: {'pass' if clean_ok else 'FAIL'} ({clean_s:.1f} s) {clean_line}")
        print(f"        mutated:   {'pass' if mutated_ok else 'fail'} ({mutated_s:.1f} s) {mutated_line}")
    return 0 if caught_all else 1


if __name__ == "__main__":
    sys.exit(main())
