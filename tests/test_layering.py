"""Rules about which code may import which, checked on the source (as tailscale's deps_test.go).

Every import counts: top level, inside functions, under ``if TYPE_CHECKING``. Each rule carries its
reason, which is the failure message; a rule that must bend gets an entry in an allowance with the
reason it bends, never a silent skip.

Back-edges (the figure issue 15 asks for): an import from an ``appliance`` module to a module in a
higher layer of LAYERS, plus every import that closes a cycle between modules of one layer (the
edge from the module that comes later in a depth-first walk). ``back_edges()`` counts them; the
test allows only the documented ones.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("appliance", "hardening", "devinstance")


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    path: Path
    line: int
    target: str  # the dotted module imported (a submodule when ``from pkg import submodule``)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(root: Path = ROOT, tops: tuple[str, ...] = PACKAGES) -> Iterator[Path]:
    for top in tops:
        yield from sorted((root / top).rglob("*.py"))


def _modules(root: Path) -> set[str]:
    return {module_name(p, root) for p in source_files(root)}


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(path: Path, root: Path = ROOT, known: set[str] | None = None) -> Iterator[Import]:
    """Every import in the file, wherever it stands, resolved to a module name."""
    known = known if known is not None else _modules(root)
    importer = module_name(path, root)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(importer, path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, importer, path.name == "__init__.py")
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                # "from importlib import metadata" imports the module importlib.metadata
                is_module = sub in known or sub in LEFT_OUT_OF_THE_BINARY
                yield Import(importer, path, node.lineno, sub if is_module else module)


def all_imports(root: Path = ROOT, tops: tuple[str, ...] = PACKAGES) -> list[Import]:
    known = _modules(root)
    return [imp for path in source_files(root, tops) for imp in imports_of(path, root, known)]


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


# The appliance from the bottom up, as one job travels: shared types and caps, then the config and
# credentials it runs under, the probes that do the work, the queue and its journal, the dispatcher,
# the runner, the wiring of a process, and the CLI on top. A module not named here is wiring
# (layer 6), so a new module can import anything below the CLI but nothing low may import it.
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "appliance",  # the package itself: its version
        "appliance.errors",
        "appliance.limits",
        "appliance.interfaces",
        "appliance.credtypes",
        "appliance.payload",
        "appliance._jsonfile",
        "appliance.ratelimit",
        "appliance.scope",
        "appliance.replay",
        "appliance.quarantine",
        "appliance.health",
        "appliance.sdnotify",
        "appliance.logsetup",
        "appliance.preload",
        "appliance.reload_request",
        "appliance.status_file",
        "appliance.aio",
        "appliance.runstats",
        "appliance.mib",  # MIB names and OIDs: the SNMP probe's and the config's OID scopes'
        "appliance.memtrim",
    ),
    ("appliance.config", "appliance.credentials", "appliance.aliases", "appliance.validity"),
    ("appliance.probes", "appliance.asks", "appliance.explain"),
    ("appliance.queue", "appliance.results"),
    ("appliance.dispatch", "appliance.gate"),
    ("appliance.runner", "appliance.livestatus", "appliance.healthreport"),
    (),  # wiring: app, service, doctor, platform service code, and every module not named
    ("appliance.commands", "appliance.cli", "appliance.__main__"),
)
WIRING = 6


def layer_of(module: str) -> int:
    """The layer of the longest LAYERS prefix that names ``module``; unnamed modules are wiring."""
    best, best_len = WIRING, -1
    for number, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (
                _under(module, prefix)
                and len(prefix) > best_len
                and (prefix != "appliance" or module == prefix)
            ):
                best, best_len = number, len(prefix)
    return best


def _cycle_closing(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Edges that point back to a module still on the depth-first stack: each closes a cycle."""
    closing: set[tuple[str, str]] = set()
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(start: str) -> None:
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges.get(start, ()))))]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state.get(child) == 1:
                closing.add((node, child))
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(sorted(edges.get(child, ())))))

    for module in sorted(edges):
        if module not in state:
            visit(module)
    return closing


def back_edges(root: Path = ROOT) -> set[tuple[str, str]]:
    """Distinct (importer, imported) pairs in ``appliance`` that go up a layer or close a cycle."""
    edges: dict[str, set[str]] = {}
    for imp in all_imports(root, ("appliance",)):
        if _under(imp.target, "appliance") and imp.target != imp.importer:
            edges.setdefault(imp.importer, set()).add(imp.target)
    upward = {(a, b) for a, targets in edges.items() for b in targets if layer_of(b) > layer_of(a)}
    same_layer = {a: {b for b in targets if layer_of(a) == layer_of(b)} for a, targets in edges.items()}
    return upward | _cycle_closing(same_layer)


# Standard modules the binary does not ship (build/midbox.spec, build/tools/midbox_build/manifest.py).
LEFT_OUT_OF_THE_BINARY = (
    "pickle",
    "_pickle",
    "pprint",
    "logging.handlers",
    "tracemalloc",
    "importlib.metadata",
    "zipfile",
    "csv",
    "getopt",
)

# Back-edges that stay for now, each with the reason and the way out.
ALLOWED_BACK_EDGES: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Rule:
    name: str
    forbids: Callable[[Import], bool]
    reason: str


def _private_hardening(target: str) -> bool:
    return _under(target, "hardening") and any(
        part.startswith("_") and not part.startswith("__") for part in target.split(".")
    )


def _probe_reaches_up(imp: Import) -> bool:
    above = (
        "appliance.queue",
        "appliance.queue.durable",
        "appliance.runner",
        "appliance.dispatch",
        "appliance.gate",
    )
    return _under(imp.importer, "appliance.probes") and any(_under(imp.target, m) for m in above)


RULES = (
    Rule(
        "hardening stands alone",
        lambda imp: _under(imp.importer, "hardening") and _under(imp.target, "appliance"),
        "hardening holds the security mechanisms and must import nothing from appliance, so it can "
        "be reviewed and tested on its own; move what both need into hardening",
    ),
    Rule(
        "probes do not reach the queue",
        _probe_reaches_up,
        "a probe gets a Job and a ProbeContext and returns a result; the queue, the journal, the "
        "dispatcher and the runner call probes, never the other way (pass what a probe needs in "
        "ProbeContext)",
    ),
    Rule(
        "devinstance never ships",
        lambda imp: not _under(imp.importer, "devinstance") and _under(imp.target, "devinstance"),
        "devinstance is the development stand-in for the instance and is never frozen into the "
        "binary (the build manifest forbids it); only tests and devinstance itself may import it",
    ),
    Rule(
        "hardening's private modules stay private",
        lambda imp: _under(imp.importer, "appliance") and _private_hardening(imp.target),
        "a _module is its package's own detail; import the public name its package exports (add the "
        "export there) so hardening can change its insides",
    ),
    Rule(
        "the runtime speaks SNMP on its own codec",
        lambda imp: (
            (_under(imp.importer, "appliance") or _under(imp.importer, "hardening"))
            and any(_under(imp.target, lib) for lib in ("pysnmp", "pyasn1"))
        ),
        "v1, v2c and v3 run on appliance.probes.snmp's strict codec and the binary excludes pysnmp and "
        "pyasn1 (build/midbox.spec); pysnmp is the tests' oracle only (tests/support/pysnmp_oracle.py)",
    ),
    Rule(
        "the runtime imports nothing the binary leaves out",
        lambda imp: (
            (_under(imp.importer, "appliance") or _under(imp.importer, "hardening"))
            and any(_under(imp.target, m) for m in LEFT_OUT_OF_THE_BINARY)
        ),
        "the frozen binary leaves these modules out for size (build/midbox.spec's EXCLUDES, issue 19), so "
        "the import would fail only in the binary; the service log rotates with appliance.servicelog, and "
        "a version is a constant, not an importlib.metadata lookup",
    ),
    Rule(
        "appliance.interfaces is a leaf",
        lambda imp: imp.importer == "appliance.interfaces" and _under(imp.target, "appliance"),
        "the shared interfaces are imported by config, credentials, probes and the runner alike; if "
        "they imported any of those the layers would loop",
    ),
)


def violations(rule: Rule, imports: list[Import]) -> list[str]:
    return [
        f"{imp.path.relative_to(ROOT)}:{imp.line} imports {imp.target}"
        for imp in imports
        if rule.forbids(imp)
    ]


def test_import_rules_hold() -> None:
    imports = all_imports()
    failures = [
        f"{rule.name}: {rule.reason}\n  " + "\n  ".join(found)
        for rule in RULES
        if (found := violations(rule, imports))
    ]
    assert not failures, "\n".join(failures)


def test_the_job_path_runs_one_way() -> None:
    found = back_edges()
    unexpected = sorted(found - set(ALLOWED_BACK_EDGES))
    assert not unexpected, (
        "these imports go up a layer of the appliance or close a cycle; the job path runs one way "
        "(tests/test_layering.py LAYERS): move the shared part down (appliance/interfaces.py for "
        "types several layers use) instead of importing upward:\n  "
        + "\n  ".join(f"{a} -> {b} (layer {layer_of(a)} -> {layer_of(b)})" for a, b in unexpected)
    )
    stale = sorted(set(ALLOWED_BACK_EDGES) - found)
    assert not stale, f"allowed back-edges that are gone; delete them from ALLOWED_BACK_EDGES: {stale}"


def _environ_reads(path: Path) -> Iterator[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in ("environ", "environb", "getenv", "getenvb", "putenv", "unsetenv")
        ) or (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(a.name in ("environ", "environb", "getenv", "getenvb") for a in node.names)
        ):
            yield node.lineno


ENVIRON_ENTRY = Path("appliance/cli.py")


def test_only_the_cli_entry_reads_the_environment() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in source_files(ROOT, ("appliance", "hardening"))
        if path.relative_to(ROOT) != ENVIRON_ENTRY
        for line in _environ_reads(path)
    ]
    assert not found, (
        "os.environ is read only in appliance/cli.py, which hands the environment down in CliEnv: "
        "a test or a service manager can then pass one in, and nothing reads ambient settings behind "
        "the signed config's back; take env.environ instead:\n  " + "\n  ".join(found)
    )


# The checks above must be able to fail: each is run once on a small tree that breaks it.
BROKEN_TREE = {
    "hardening/__init__.py": "",
    "hardening/thing.py": "def f():\n    from appliance.limits import Limits\n",
    "hardening/_secret.py": "",
    "appliance/__init__.py": "",
    "appliance/limits.py": "import os\nX = os.environ.get('A')\n",
    "appliance/interfaces.py": "",
    "appliance/runner.py": "",
    "appliance/devuse.py": "import devinstance.server\nfrom hardening import _secret\n",
    "appliance/queue/durable.py": "from appliance.runner import x\n",
    "appliance/queue/__init__.py": "",
    "appliance/queue/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from appliance.queue.b import B\n",
    "appliance/queue/b.py": "from . import a\n",
    "appliance/probes/__init__.py": "",
    "appliance/probes/p.py": "from ..queue import a\n",
    "appliance/probes/s.py": "def f():\n    from pysnmp.hlapi.v3arch.asyncio import get_cmd\n",
    "hardening/asn.py": "import pyasn1.codec.ber\n",
    "appliance/svclog.py": "def f():\n    from logging.handlers import RotatingFileHandler\n",
    "hardening/ver.py": "from importlib import metadata\nimport zipfile\n",
    "devinstance/__init__.py": "",
    "devinstance/server.py": "",
}


def test_the_rules_catch_a_broken_tree(tmp_path: Path) -> None:
    for name, text in BROKEN_TREE.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    imports = all_imports(tmp_path)
    caught = {
        rule.name: sorted((imp.importer, imp.target) for imp in imports if rule.forbids(imp))
        for rule in RULES
    }
    assert caught == {
        "hardening stands alone": [("hardening.thing", "appliance.limits")],
        "probes do not reach the queue": [("appliance.probes.p", "appliance.queue.a")],
        "devinstance never ships": [("appliance.devuse", "devinstance.server")],
        "hardening's private modules stay private": [("appliance.devuse", "hardening._secret")],
        "the runtime speaks SNMP on its own codec": [
            ("appliance.probes.s", "pysnmp.hlapi.v3arch.asyncio"),
            ("hardening.asn", "pyasn1.codec.ber"),
        ],
        "the runtime imports nothing the binary leaves out": [
            ("appliance.svclog", "logging.handlers"),
            ("hardening.ver", "importlib.metadata"),
            ("hardening.ver", "zipfile"),
        ],
        "appliance.interfaces is a leaf": [],
    }
    assert back_edges(tmp_path) == {
        ("appliance.queue.durable", "appliance.runner"),  # the queue layer up to the runner
        ("appliance.probes.p", "appliance.queue.a"),  # probes up to the queue
        ("appliance.queue.b", "appliance.queue.a"),  # closes a -> b -> a (a's import is TYPE_CHECKING only)
    }
    assert list(_environ_reads(tmp_path / "appliance/limits.py")) == [2]
