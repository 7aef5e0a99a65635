"""CI fuzzing: replay the committed corpus, then a short bounded mutation run of every target.

A target succeeds or raises only its parser's declared error; any other exception is a finding.
The longer run is ``python -m tests.fuzz.run`` (see README.md). Budgets here are execution counts,
not seconds, so a slow machine runs longer rather than testing less, and a failure is reproducible
from its seed.
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.config import parse_config
from appliance.errors import ConfigError, InstanceError
from appliance.queue.records import parse_output
from hardening.signing.errors import EnvelopeError, TrustRootError
from hardening.signing.trust import parse as parse_trust
from tests.fuzz import mutate
from tests.fuzz.run import CORPUS, load_seeds
from tests.fuzz.targets import Target, Targets

NAMES = sorted(Targets(Path("unused")).all)
# Executions per target in CI: file-based targets are ~20x slower per input.
BUDGET = {"audit_log": 1_500, "vault_store": 1_500, "sealed_log": 1_500}
DEFAULT_BUDGET = 12_000


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Target]:
    return Targets(tmp_path_factory.mktemp("fuzz-scratch")).all


def corpus_files() -> Iterator[Path]:
    for name in NAMES:
        yield from sorted((CORPUS / name).iterdir())


def test_every_target_has_seeds_and_the_corpus_is_small() -> None:
    sizes = [p.stat().st_size for p in CORPUS.rglob("*") if p.is_file()]
    assert sum(sizes) < 300_000
    for name in NAMES:
        assert len(load_seeds(CORPUS, name)) >= 3, name
    assert {p.name for p in CORPUS.iterdir() if p.is_dir()} == set(NAMES)


@pytest.mark.parametrize("path", list(corpus_files()), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_corpus_replays(path: Path, targets: dict[str, Target]) -> None:
    targets[path.parent.name].run(path.read_bytes())


@pytest.mark.parametrize("name", NAMES)
def test_bounded_mutation_run(name: str, targets: dict[str, Target]) -> None:
    stats = mutate.run(
        targets[name].run,
        load_seeds(CORPUS, name),
        executions=BUDGET.get(name, DEFAULT_BUDGET),
        rng=random.Random(f"ci:{name}"),
        max_crashes=1,
    )
    if stats.crashes:
        data, exc = stats.crashes[0]
        raise AssertionError(f"{name} crashed on {data[:200]!r}") from exc
    assert stats.executions == BUDGET.get(name, DEFAULT_BUDGET)


@pytest.mark.parametrize("name", NAMES)
def test_random_bytes(name: str, targets: dict[str, Target]) -> None:
    run = targets[name].run

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(st.binary(max_size=2048))
    def check(data: bytes) -> None:
        run(data)

    check()


def test_the_mutator_can_fail() -> None:
    # A driver that never reports a crash would make every test above pass vacuously.
    def target(data: bytes) -> None:
        if b"!" in data:
            raise RuntimeError("found")

    stats = mutate.run(target, [b"abc"], executions=5_000, rng=random.Random(1), max_crashes=1)
    assert stats.crashes and isinstance(stats.crashes[0][1], RuntimeError)


def test_a_hang_is_reported() -> None:
    def target(data: bytes) -> None:
        while True:
            pass

    stats = mutate.run(target, [b"x"], executions=1, rng=random.Random(1), hang_seconds=0.2)
    assert isinstance(stats.crashes[0][1], mutate.Hang)


def test_mutations_stay_bounded() -> None:
    rng = random.Random(7)
    data = b"x" * 1000
    for _ in range(2_000):
        data = mutate.mutate(data, [data], rng)
        assert len(data) <= mutate.MAX_INPUT_BYTES


# -- regression tests: every crash the fuzzer found -------------------------------------------------

CONFIG_HEAD = b'version = 1\nexpires = 2027-06-01T00:00:00Z\n[appliance]\nname = "a"\n[instance]\n'


@pytest.mark.parametrize(
    "body",
    [
        # tomllib raised a bare ValueError for an integer over the 4300-digit conversion limit.
        b"version = " + b"9" * 5000 + b"\n",
        # urlsplit raised ValueError("Invalid IPv6 URL") for an unclosed bracket.
        CONFIG_HEAD + b'url = "https://[acme.service-now.com"\nca_file = "c"\n',
        # urlsplit raised ValueError for a bracketed host that is not an IP address.
        CONFIG_HEAD + b'url = "https://[161]/"\nca_file = "c"\n',
        CONFIG_HEAD
        + b'url = "https://a.b"\nca_file = "c"\nbasic_auth_credential = "s"\nproxy = "http://[x"\n',
        # float() raised OverflowError for an integer poll interval too large for a float.
        CONFIG_HEAD + b'url = "https://a.b"\nca_file = "c"\nbasic_auth_credential = "s"\n'
        b"poll_interval_s = " + b"9" * 400 + b"\n",
    ],
    ids=["huge-int", "unclosed-bracket", "bracketed-non-ip", "proxy-bracket", "float-overflow"],
)
def test_config_parser_refuses_with_config_error(body: bytes) -> None:
    with pytest.raises(ConfigError):
        parse_config(body, Path("midbox.toml"))


@pytest.mark.parametrize("sys_id", ["abc\n", "0f1e2d3c4b5a69788796a5b4c3d2e1f0\n"])
def test_sys_id_with_trailing_newline_is_refused(sys_id: str) -> None:
    # "$" matches before a trailing newline; a sys_id becomes a file name and a query term.
    with pytest.raises(InstanceError):
        parse_output({"sys_id": sys_id})


def test_trust_root_refuses_a_retired_entry_that_is_not_a_key_id() -> None:
    data = (CORPUS / "trust_root" / "seed-initial").read_bytes()
    bad = data.replace(b'"retired":[]', b'"retired":["6a3803d5f059902a1c6dafbc9ba4 292"]')
    assert bad != data
    with pytest.raises(TrustRootError, match="retired"):
        parse_trust(bad)


def test_hex_fields_refuse_a_trailing_newline() -> None:
    from hardening.signing.envelope import parse_envelope

    data = (CORPUS / "config_signature" / "seed-two-signers").read_bytes()
    sha = data.split(b'"sha256":"')[1][:64]
    bad = data.replace(sha, sha[:63] + b"\\n")
    with pytest.raises(EnvelopeError, match="hex"):
        parse_envelope(bad)


def test_seal_mac_with_non_ascii_text_is_tampered_not_a_crash(tmp_path: Path) -> None:
    import datetime as dt

    from hardening.audit import AuditLog, AuditOptions, Verdict, verify_log
    from hardening.audit._files import log_files
    from hardening.audit.seal import SEAL_VERIFY_FILE, parse_verification_key

    d = tmp_path / "audit"
    t0 = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
    log = AuditLog(d, AuditOptions(seal_every_entries=2), clock=lambda: t0)
    for i in range(3):
        log.record("error", {"where": "fuzz", "message": f"m{i}"})
    log.close()
    vkey = parse_verification_key((d / SEAL_VERIFY_FILE).read_bytes())
    assert verify_log(d, seal_key=vkey).ok
    path = log_files(d)[0][1]
    lines = path.read_bytes().split(b"\n")
    i = next(n for n, line in enumerate(lines) if b'"audit.seal"' in line)
    # hmac.compare_digest raised TypeError on a MAC holding a non-ASCII character.
    lines[i] = lines[i].replace(b'"mac":"', b'"mac":"\\u00e9', 1)
    path.write_bytes(b"\n".join(lines))
    report = verify_log(d, seal_key=vkey)
    assert report.verdict is Verdict.TAMPERED and report.seq == i


def test_recovery_classifies_a_payload_with_a_lone_surrogate() -> None:
    from appliance.dispatch import rerun_safe
    from appliance.probes.http import HttpProbe

    # str.encode() raised UnicodeEncodeError, so every restart crashed on this record in processing.
    record = parse_output({"sys_id": "a1", "topic": "RESTProbe", "payload": "\ud800"})
    assert rerun_safe(record, {"RESTProbe": HttpProbe()}) is True


@pytest.mark.parametrize("digit", ["\u0662", "\u0967", "\uff11"])
def test_checkpoint_time_with_a_non_ascii_digit_is_refused(digit: str) -> None:
    from hardening.audit import CheckpointError, parse_checkpoint_xml

    data = (CORPUS / "audit_checkpoint" / "seed-signed").read_bytes()
    bad = data.replace(b'time="2', f'time="{digit}'.encode(), 1)
    assert bad != data
    # "\d" matched any Unicode digit, and verify_checkpoint then raised UnicodeEncodeError.
    with pytest.raises(CheckpointError, match="time"):
        parse_checkpoint_xml(bad)


@pytest.mark.parametrize("encoding", ["utv-16", "no-such-codec"])
def test_checkpoint_with_an_unknown_declared_encoding_is_refused(encoding: str) -> None:
    from hardening.audit import CheckpointError, parse_checkpoint_xml

    data = (CORPUS / "audit_checkpoint" / "seed-signed").read_bytes()
    # expat raised LookupError for the encoding named in the XML declaration.
    with pytest.raises(CheckpointError, match="well-formed"):
        parse_checkpoint_xml(f"<?xml version='1.0' encoding='{encoding}'?>".encode() + data)


@pytest.mark.parametrize("name", NAMES)
def test_a_short_coverage_guided_run_finds_nothing(name: str, tmp_path: Path) -> None:
    """atheris (libFuzzer) from the corpus for a bounded number of runs; longer runs: tests/fuzz/README.md."""
    pytest.importorskip("atheris")
    runs = "400" if name in ("audit_log", "vault_store", "sealed_log") else "4000"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz.atheris_run",
            name,
            "--scratch",
            str(tmp_path),
            f"-runs={runs}",
            f"-artifact_prefix={tmp_path}/",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert not list(tmp_path.glob("crash-*"))
