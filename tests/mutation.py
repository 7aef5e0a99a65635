"""Mutation testing of the security modules with mutmut (pinned in build/lock/requirements-dev.txt).

Usage, from the repository root, with the dev venv's python:

    python -m tests.mutation                 # every module below (the full run, about 10 min on 2 cores)
    python -m tests.mutation --ci            # the bounded CI sample (CI_SAMPLE, about 1.5 min)
    python -m tests.mutation --only NAME     # one module, e.g. --only targets
    python -m tests.mutation --show          # also print the diff of every surviving mutant

Each module is mutated in its own copy of the tree (the checkout is never edited) and only the test
files listed for it run, so every run is bounded. mutmut mutates function bodies only (not
module-level constants) and runs, per mutant, the tests that reached the mutated function.

Exit status: 1 when a mutant of a security decision survived, i.e. a surviving mutant in one of a
module's ``decisions`` functions that is not in ``EQUIVALENT`` (mutants that cannot change
behaviour, each with the reason). Survivors elsewhere (messages, formatting) are reported, not fatal.
See tests/MUTATION.md for the scores and the reasoning behind each equivalent mutant.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPY = ("appliance", "hardening", "devinstance", "tests", "docs", "build", "pyproject.toml")
MUTMUT = ("-c", "import sys; from mutmut.__main__ import cli; sys.argv[0] = 'mutmut'; cli()")
# Killed: a test failed. Timeout and crash also mean the tests noticed the mutant.
_LITERAL = re.compile(r"""[rRbBfF]{0,2}("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""")
_FIELD = re.compile(r"\{[^}]*\}")
DETECTED = frozenset({"killed", "timeout", "segfault", "caught by type check"})


@dataclass(frozen=True)
class Module:
    name: str
    path: str
    tests: tuple[str, ...]
    # Functions (as mutmut names them: x_func, xǁClassǁmethod) whose every mutant is a security decision.
    decisions: tuple[str, ...]


MODULES = (
    Module(
        "targets",
        "appliance/probes/targets.py",
        ("tests/probes/test_targets.py", "tests/probes/test_every_address.py", "tests/probes/test_http.py"),
        ("x_checked_addresses", "x_checked_target", "x_is_literal"),
    ),
    Module(
        "allowrule",
        "hardening/allowrule.py",
        (
            "tests/policy/test_policy.py",
            "tests/probes/test_every_address.py",
            "tests/policy/test_scopes.py",
            "tests/policy/test_resolves_within.py",
        ),
        (
            "xǁPortRangeǁ__contains__",
            "xǁAllowRuleǁmatches_target",
            "xǁAllowRuleǁnames_explicitly",
            "xǁAllowRuleǁ__post_init__",
            "xǁCredentialMapǁaliases",
            "x_canonical",
            "x_is_special",
        ),
    ),
    Module(
        "policy",
        "hardening/policy.py",
        (
            "tests/policy/test_policy.py",
            "tests/probes/test_every_address.py",
            "tests/policy/test_scopes.py",
            "tests/policy/test_resolves_within.py",
        ),
        (
            "xǁPolicyǁrule",
            "xǁPolicyǁcheck",
            "xǁPolicyǁcredentials_for",
        ),
    ),
    Module(
        "sigverify",
        "hardening/signing/verify.py",
        (
            "tests/signing/test_sigverify_bounds.py",
            "tests/signing/test_signing_units.py",
            "tests/signing/test_signing_attacks.py",
            "tests/signing/test_signing_reload.py",
        ),
        ("*",),
    ),
    Module(
        "rollback",
        "hardening/signing/rollback.py",
        (
            "tests/signing/test_rollback_edges.py",
            "tests/signing/test_signing_units.py",
            "tests/signing/test_signing_attacks.py",
            "tests/signing/test_signing_reload.py",
        ),
        ("*",),
    ),
    Module(
        "known_hosts",
        "hardening/known_hosts.py",
        ("tests/policy/test_known_hosts_edges.py", "tests/policy/test_known_hosts.py"),
        ("*",),
    ),
    Module(
        "naclshim",
        "hardening/naclshim.py",
        ("tests/hardening/test_naclshim.py",),
        ("x_small_order", "x_canonical", "x_bytes_of_length", "xǁVerifyKeyǁverify", "xǁVerifyKeyǁ__init__"),
    ),
    Module(
        "audit_verify",
        "hardening/audit/verify.py",
        (
            "tests/audit/test_verify_reports.py",
            "tests/audit/test_tamper.py",
            "tests/audit/test_checkpoint.py",
            "tests/audit/test_seal.py",
            "tests/audit/test_log.py",
        ),
        ("*",),
    ),
    Module(
        "http",
        "appliance/probes/http.py",
        # Not test_http_hostile.py: its end-to-end run takes 9 s per mutant; its claims are covered here.
        (
            "tests/probes/test_http_edges.py",
            "tests/probes/test_http.py",
            "tests/probes/test_http_tls.py",
            "tests/probes/test_every_address.py",
            "tests/probes/test_scopes_e2e.py::test_http_methods_and_paths_scope",  # redirects judged per hop
        ),
        # Not decisions: _result (the answer's XML form), _reason (error wording), aclose.
        (
            "xǁHttpProbeǁrun",
            "xǁHttpProbeǁ_auth_header",
            "xǁHttpProbeǁ_send",
            "xǁHttpProbeǁ_client",
            "x__target_context",
            "x__parse_request",
            "x__printable_ascii",
            "x__follow",
        ),
    ),
)
# The CI sample: the allowlist, the signed config, the host-key pins and the Ed25519 checks the binary's
# SSH host-key verification runs on; about 2.5 min on 2 cores.
CI_SAMPLE = ("targets", "allowrule", "policy", "sigverify", "rollback", "known_hosts", "naclshim")

# Survivors that cannot change behaviour, keyed by (module, the mutated line as mutmut writes it,
# stripped). Each reason says why; tests/MUTATION.md lists them too.
_NO_X = "lower() runs first, so no upper-case X is left to strip"
EQUIVALENT: dict[tuple[str, str], str] = {
    ("allowrule", 'name = hostname.lower().rstrip("XX.XX")'): _NO_X,
    ("allowrule", 'return any(name == h.lower().rstrip("XX.XX") for h in self.hosts)'): _NO_X,
    (
        "policy",
        "near_miss = None",
    ): 'near_miss is only read as "near_miss or ...": None and "" are both false',
    **dict.fromkeys(
        [
            ("policy", "decided = None"),
            ("policy", "decided = self._compiled.decisions.get(None)"),
            ("policy", "_remember(self._compiled.decisions, key, None, DECISION_CACHE_ENTRIES)"),
        ],
        "the decision cache only saves time: a miss (or a None held) makes check() decide again, the same "
        "way (tests/policy/test_policy_cache.py: a warm policy decides exactly as a cold one)",
    ),
    (
        "targets",
        'addresses = [ipaddress.ip_address(host.strip("XX[]XX"))] if hostname is None else await ctx.resolver(host)',
    ): "reached only for a literal, whose ends are digits, hex or ':' once the brackets are gone, never X",
    (
        "targets",
        'first_number: int | None = ""',
    ): "the resolver returns at least one address, so the loop sets first_number or raises before the lease",
    **dict.fromkeys(
        [
            ("sigverify", "self._config = None"),
            ("sigverify", 'self._config = b"XXXX"'),
            ("sigverify", "self._envelope_bytes = None"),
            ("sigverify", 'self._envelope_bytes = b"XXXX"'),
            ("sigverify", 'self._env: UnverifiedEnvelope | None = ""'),
            ("sigverify", "self._valid: set[str] = None"),
        ],
        "a placeholder that step 1, 2 or 4 overwrites before anything reads it; the enforced step "
        "order (StepOrderError) makes an earlier read impossible",
    ),
    (
        "known_hosts",
        'digest = base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("XX=XX")',
    ): "the last base64 character of a 32-byte digest carries two zero bits (one of AEIMQUYcgkosw048), never X",
    **dict.fromkeys(
        [
            ("known_hosts", 'text = data.decode("UTF-8")'),
            ("known_hosts", 'old = self._path.read_bytes().decode("UTF-8")'),
        ],
        "codec names are case-insensitive",
    ),
    **dict.fromkeys(
        [
            ("known_hosts", 'return _Entry(tuple(fields[0].split(",")), None).matches(name)'),
            ("known_hosts", 'return _Entry(tuple(fields[0].split(",")), HostKey(None, b"")).matches(name)'),
            ("known_hosts", 'return _Entry(tuple(fields[0].split(",")), HostKey("", None)).matches(name)'),
            ("known_hosts", 'return _Entry(tuple(fields[0].split(",")), HostKey("XXXX", b"")).matches(name)'),
            ("known_hosts", 'return _Entry(tuple(fields[0].split(",")), HostKey("", b"XXXX")).matches(name)'),
        ],
        "_Entry.matches reads only the names; the key there is a placeholder",
    ),
    **dict.fromkeys(
        [
            ("known_hosts", 'if len(fields) < 3 or line.rstrip().startswith("#"):'),
            ("known_hosts", 'if len(fields) < 3 or line.lstrip().startswith("XX#XX"):'),
        ],
        "a comment that is not skipped still never matches: its first field starts with '#', no host name does",
    ),
    ("known_hosts", 'atomic_write(self._path, ("\\n".join(kept) + "\\n").encode(), )'): (
        "atomic_write's default mode is the same 0o600"
    ),
    **dict.fromkeys(
        [
            ("audit_verify", "key = vkey.key_at(self.seal_epoch, None)"),
            ("audit_verify", "key = vkey.key_at(self.seal_epoch, )"),
            ("audit_verify", "self.seal_cache = None"),
            ("audit_verify", 'self.seal_cache: tuple[int, bytes] | None = ""'),
        ],
        "the cache only saves re-deriving the epoch key; without it key_at derives the same key from epoch 0",
    ),
    ("audit_verify", "if not line.complete and not line.oversized and not self.lines.peek(2):"): (
        "peek(2) is empty exactly when peek(1) is"
    ),
    ("audit_verify", "nxt = self.lines.peek(2)"): "only nxt[0] is read",
    **dict.fromkeys(
        [
            ("http", 'headers["authorization"] = auth_header'),
            ("http", 'headers["AUTHORIZATION"] = auth_header'),
            ("http", 'headers["HOST"] = host_header'),
            ("http", 'headers["host"] = host_header'),
            ("http", 'location = response.headers.get("LOCATION")'),
            ("http", 'body = BoundedBody(response.headers.get("CONTENT-ENCODING", ""), limit)'),
        ],
        "header names are case-insensitive (httpx.Headers and the wire); a job can set neither Host nor "
        "Authorization, so there is no second header to clash with",
    ),
    **dict.fromkeys(
        [
            ("http", 'literal = f"[{address}]" if (":" in str(address)) and False else str(address)'),
            ("http", 'literal = f"[{address}]" if (":" in str(address)) or True else str(address)'),
            ("http", 'literal = f"[{address}]" if "XX:XX" in str(address) else str(address)'),
            ("http", 'literal = f"[{address}]" if ":" not in str(address) else str(address)'),
            ("http", 'literal = f"[{address}]" if ":" in str(None) else str(address)'),
            ("http", "target = url.copy_with(host=literal.strip(None))"),
            ("http", 'target = url.copy_with(host=literal.strip("XX[]XX"))'),
        ],
        "httpx's URL.copy_with takes an IPv6 host with or without brackets and gives the same URL, so "
        "every bracketing variant connects to the same checked address",
    ),
    (
        "http",
        "request = job.parsed if (isinstance(job.parsed, _Request)) and False else parse_request(job)",
    ): (
        "parses the payload again instead of taking the dispatcher's parse of the same payload: the same request"
    ),
    (
        "http",
        "hop = ctx if (ask == ctx.policy.ask) and False else replace(ctx, policy=ctx.policy.scoped(ask))",
    ): ("scopes the policy again for the ask it is already scoped to: the same decisions, one more object"),
    ("http", "transport = self._client(url.scheme, None, ca)"): (
        "one TLS transport shared by every name with the same CA: its pool keys connections by address, port "
        "and SNI and each handshake verifies the request's own name (test_https_to_a_name_is_verified_for_"
        "that_name_and_not_reused_for_another), so what is verified and what is reused stay the same"
    ),
    ("http", 'ctx = ssl.create_default_context(cadata=pem.decode("ASCII"))'): (
        "codec names are case-insensitive: 'ASCII' is 'ascii'"
    ),
    **dict.fromkeys(
        [
            ("naclshim", "self._key = _bytes_of_length(key, KEY_BYTES, None)"),
            ("naclshim", 'self._key = _bytes_of_length(key, KEY_BYTES, "XXkeyXX")'),
            ("naclshim", 'self._key = _bytes_of_length(key, KEY_BYTES, "KEY")'),
            ("naclshim", "_bytes_of_length(signature, SIGNATURE_BYTES, None)"),
            ("naclshim", '_bytes_of_length(signature, SIGNATURE_BYTES, "XXsignatureXX")'),
            ("naclshim", '_bytes_of_length(signature, SIGNATURE_BYTES, "SIGNATURE")'),
        ],
        "the word naming the argument in the wrong-length error's message; the length is still refused",
    ),
    (
        "naclshim",
        "if _small_order(self._key) or not _canonical(self._key) or _small_order(signature[:33]):",
    ): "_small_order reads the first 32 bytes only, so R is the same 32 bytes either way",
    ("http", 'body = BoundedBody(response.headers.get("content-encoding", "XXXX"), limit)'): (
        "an encoding BoundedBody does not know is kept as sent, exactly like no encoding"
    ),
    **dict.fromkeys(
        [
            ("http", 'if "location header" not in str(e).lower():'),
            ("http", 'if "location header" in str(e).upper():'),
            ("http", 'if "location header" in str(None).lower():'),
        ],
        "chooses between two wordings of the same ProbeError; the request is refused either way",
    ),
    ("http", 'method = (job.param("http_method") or "get").upper()'): '"get".upper() is "GET"',
    ("http", 'return all(0x21 <= ord(c) <= 0x7E or (allow_space and c in "XX \\tXX") for c in text) and ('): (
        "X is printable ASCII already, so allowing it again changes nothing"
    ),
    ("http", 'f"header {key[:41]!r}: names and values must be printable ASCII (no line breaks); "'): (
        "how much of a refused header name the message quotes (40 or 41 characters)"
    ),
    **dict.fromkeys(
        [
            ("http", 'method = "head" if request.method == "HEAD" else "GET"'),
            ("http", 'method = "HEAD" if request.method == "HEAD" else "get"'),
        ],
        "httpx upper-cases the method of every request it builds",
    ),
    ("http", "return _Request(method, url, request.headers, None)"): (
        "the body is only read as 'request.body or None': None and b'' send the same request"
    ),
    ("http", 'extensions = {"sni_hostname": url.host} if (url.scheme == "https") or True else {}'): (
        "httpcore reads sni_hostname only when it starts TLS; a plain-HTTP request ignores it"
    ),
    **dict.fromkeys(
        [
            ("http", 'ca = rule.tls_ca if (rule is not None and url.scheme == "https") or True else None'),
            ("http", 'ca = rule.tls_ca if rule is not None or url.scheme == "https" else None'),
        ],
        "only the HTTPS client reads ca (_client ignores it for http), and rule is never None once "
        "checked_target allowed an address",
    ),
    ("audit_verify", "if entry.seq <= e:"): "entry.seq == e has returned earlier in unlinked()",
    ("audit_verify", "while len(self._buffer) <= count:"): (
        "reads one line further ahead into the buffer but still returns the first count lines"
    ),
}


@dataclass(frozen=True)
class Mutant:
    name: str
    status: str
    diff: str

    @property
    def function(self) -> str:
        # appliance.probes.targets.x_checked_target__mutmut_9 -> x_checked_target
        return self.name.rsplit(".", 1)[-1].rsplit("__mutmut_", 1)[0]

    def lines(self, sign: str) -> tuple[str, ...]:
        return tuple(
            line[1:].strip()
            for line in self.diff.splitlines()
            if line.startswith(sign) and not line.startswith(sign * 3)
        )

    @property
    def added(self) -> tuple[str, ...]:
        return self.lines("+")

    @property
    def message_only(self) -> bool:
        """True if the mutant changes only the wording of prose (a string literal with a space in it).

        Decisions compare against tokens ("ssh", "[]", "."), never against prose, so a mutant that
        only rewords a sentence changes what a person reads, not what is allowed.
        """
        before, after = " ".join(self.lines("-")), " ".join(self.lines("+"))
        if _reworded_refusal(before, after):
            return True
        old, new = _LITERAL.findall(before), _LITERAL.findall(after)
        if not old or len(old) != len(new) or _LITERAL.sub('""', before) != _LITERAL.sub('""', after):
            return False
        changed = [(o, n) for o, n in zip(old, new, strict=True) if o != n]
        # An f-string's {expressions} are code, not prose: they must be untouched.
        return bool(changed) and all(" " in o and _FIELD.findall(o) == _FIELD.findall(n) for o, n in changed)


def _reworded_refusal(before: str, after: str) -> bool:
    """True if only the message of an exception changes: ``raise E(msg)`` stays ``raise E(...)``, or a
    multi-line message (prose literals alone) becomes ``None``. The refusal itself still happens."""
    if before.startswith("raise ") and after.startswith("raise "):
        return before.split("(", 1)[0] == after.split("(", 1)[0] and before != after
    prose = _LITERAL.findall(before)
    return (
        after.rstrip(",") == "None"
        and bool(prose)
        and _LITERAL.sub("", before).strip(" ,") == ""
        and all(" " in p for p in prose)
    )


@dataclass(frozen=True)
class Outcome:
    module: Module
    mutants: tuple[Mutant, ...]
    seconds: float

    @property
    def killed(self) -> int:
        return sum(m.status in DETECTED for m in self.mutants)

    def is_decision(self, mutant: Mutant) -> bool:
        return "*" in self.module.decisions or mutant.function in self.module.decisions

    def equivalent(self, mutant: Mutant) -> str | None:
        for line in mutant.added:
            reason = EQUIVALENT.get((self.module.name, line))
            if reason:
                return reason
        return None


def copy_tree(into: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "mutants")
    for name in COPY:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=ignore)
        else:
            shutil.copy2(source, into / name)


def configure(tree: Path, module: Module) -> None:
    quoted = ", ".join(f'"{t}"' for t in module.tests)
    with (tree / "pyproject.toml").open("a") as f:
        f.write(
            "\n[tool.mutmut]\n"
            'source_paths = ["appliance", "hardening", "devinstance"]\n'
            f'only_mutate = ["{module.path}"]\n'
            f"pytest_add_cli_args_test_selection = [{quoted}]\n"
            # Some tests read the docs (docs/policy.md's examples must parse); the naclshim tests load the
            # binary's runtime hook.
            'also_copy = ["docs", "build/rthooks"]\n'
            # The copy is not a git checkout; there is nothing earlier to compare with.
            "use_git_change_detection = false\n"
        )


def mutmut(tree: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "MIDBOX_REQUIRE_ALL"}}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [sys.executable, *MUTMUT, *args], cwd=tree, env=env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def run_module(module: Module, children: int) -> Outcome:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="midbox-mutation-") as scratch:
        tree = Path(scratch)
        copy_tree(tree)
        configure(tree, module)
        done = mutmut(tree, "run", "--max-children", str(children), timeout=3600)
        listed = mutmut(tree, "results", "--all", "true", timeout=120)
        statuses = re.findall(r"^\s*(\S+): (.+)$", listed.stdout, flags=re.MULTILINE)
        if done.returncode != 0 or not statuses:
            tail = (done.stdout + done.stderr)[-2000:]
            raise SystemExit(f"mutmut failed on {module.path} (exit {done.returncode}):\n{tail}")
        mutants = []
        for name, status in statuses:
            diff = "" if status.strip() in DETECTED else mutmut(tree, "show", name, timeout=120).stdout
            mutants.append(Mutant(name, status.strip(), diff))
    return Outcome(module, tuple(mutants), time.monotonic() - started)


def report(outcome: Outcome, *, show: bool) -> int:
    """Print one module's score and survivors; return how many security-decision survivors are unexplained."""
    total = len(outcome.mutants)
    print(f"{outcome.module.path}: {outcome.killed}/{total} killed ({outcome.seconds:.0f} s)")
    unexplained = 0
    for mutant in outcome.mutants:
        if mutant.status in DETECTED:
            continue
        reason = outcome.equivalent(mutant)
        if reason:
            kind = f"equivalent: {reason}"
        elif mutant.message_only:
            kind = "message text only"
        elif outcome.is_decision(mutant):
            kind = "SECURITY DECISION NOT TESTED"
            unexplained += 1
        else:
            kind = "not a security decision"
        print(f"  {mutant.status}: {mutant.name} ({kind})")
        if show or kind.startswith("SECURITY"):
            for line in mutant.diff.splitlines():
                if line.startswith(("+", "-")) and not line.startswith(("+++", "---")):
                    print(f"      {line}")
    return unexplained


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=[m.name for m in MODULES], action="append")
    parser.add_argument("--ci", action="store_true", help=f"run the CI sample: {', '.join(CI_SAMPLE)}")
    parser.add_argument("--show", action="store_true", help="print the diff of every survivor")
    parser.add_argument("--children", type=int, default=2, help="mutants tested in parallel (default 2)")
    args = parser.parse_args()
    chosen = set(args.only or (CI_SAMPLE if args.ci else [m.name for m in MODULES]))
    started = time.monotonic()
    unexplained = killed = total = 0
    for module in MODULES:
        if module.name in chosen:
            outcome = run_module(module, args.children)
            unexplained += report(outcome, show=args.show)
            killed += outcome.killed
            total += len(outcome.mutants)
    print(f"mutation: {killed}/{total} killed in {time.monotonic() - started:.0f} s; "
          f"{unexplained} surviving mutant(s) of a security decision")  # fmt: skip
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
