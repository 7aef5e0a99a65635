"""kill -9 at random moments while the store is being written never leaves it unusable or rolled back."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from hardening.vault import KeySource, VaultPaths, edit_store, open_store

ROOT = Path(__file__).resolve().parents[2]
ENV = {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "")}


def seeded() -> random.Random:
    """A random source whose seed is printed (shown when the test fails); MIDBOX_TEST_SEED replays one."""
    seed = int(os.environ.get("MIDBOX_TEST_SEED") or int.from_bytes(os.urandom(4), "big"))
    print(f"random seed {seed} (replay with MIDBOX_TEST_SEED={seed})")
    return random.Random(seed)


# Adds credentials one after another, printing each alias once its write has returned (is durable).
WRITER = """
import sys
from pathlib import Path
from hardening.vault import CredentialMeta, KeySource, Secret, VaultPaths, edit_store
paths = VaultPaths(Path(sys.argv[1]))
start = int(sys.argv[2])
print("ready", flush=True)
for i in range(start, start + 100000):
    with edit_store(paths, KeySource(paths.host_key), create=True) as draft:
        draft.put(CredentialMeta(f"c{i}", "ssh-password", "root"), [Secret(b"pw-%d" % i * 50)])
    print(f"c{i}", flush=True)
"""


def aliases(paths: VaultPaths) -> set[str]:
    with open_store(paths, KeySource(paths.host_key)) as store:
        assert store.credentials() == sorted(store.credentials(), key=lambda m: m.alias)
        for m in store.credentials():
            assert store.reveal(m.alias)[0].reveal().startswith(b"pw-")
        return {m.alias for m in store.credentials()}


def test_kill_9_in_a_loop_of_writes_never_corrupts(tmp_path: Path) -> None:
    rng = seeded()
    paths = VaultPaths(tmp_path / "state")
    committed: set[str] = set()
    next_index = 0
    leftovers_seen = 0
    waited_for = 0
    for round_ in range(30):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(paths.state_dir), str(next_index)],
            env=ENV,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        # Let 0-2 writes finish first (however slow the machine), then kill at a random moment of the
        # next ones: the test always covers kills mid-write after earlier writes, not only at start-up.
        first = max(rng.randrange(3), 1 if round_ < 5 else 0)
        done_first = [proc.stdout.readline().strip() for _ in range(first)]
        waited_for += len(done_first)
        time.sleep(rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        reported = {line for line in [*done_first, *out.split()] if line.startswith("c")}
        committed |= reported
        leftovers_seen += sum(1 for p in paths.state_dir.glob(".*.tmp"))
        if not paths.store.exists():
            assert not committed
            continue
        present = aliases(paths)
        # Everything reported done survived; at most the one write in flight is there in addition.
        assert committed <= present, sorted(committed - present)
        extra = present - committed
        assert len(extra) <= 1, extra
        committed |= extra
        next_index += len(reported) + len(extra) + 1
    assert len(committed) >= waited_for >= 5
    # The next writer removes the temp files killed writers left behind.
    with edit_store(paths, KeySource(paths.host_key)) as draft:
        draft.changed = True
    leftovers = [p.name for p in paths.state_dir.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers
    assert committed == aliases(paths)


def test_kill_9_during_creds_add_never_corrupts(tmp_path: Path) -> None:
    rng = seeded()
    state = tmp_path / "state"
    cmd = [
        sys.executable,
        "-m",
        "appliance",
        "creds",
        "add",
        "ALIAS",
        "--type",
        "http-bearer",
        "--state-dir",
        str(state),
    ]
    started = time.monotonic()
    subprocess.run([*cmd[:5], "first", *cmd[6:]], env=ENV, input=b"tok-first\n", check=True, timeout=60)
    duration = time.monotonic() - started
    paths = VaultPaths(state)
    for i in range(10):
        proc = subprocess.Popen(
            [*cmd[:5], f"k{i}", *cmd[6:]],
            env=ENV,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdin is not None
        proc.stdin.write(b"tok-%d\n" % i)
        proc.stdin.close()
        time.sleep(rng.uniform(duration * 0.5, duration * 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        present = _bearer_aliases(paths)
        assert "first" in present and present <= {"first", *(f"k{j}" for j in range(i + 1))}


def _bearer_aliases(paths: VaultPaths) -> set[str]:
    with open_store(paths, KeySource(paths.host_key)) as store:
        for m in store.credentials():
            assert store.reveal(m.alias)[0].reveal().startswith(b"tok-")
        return {m.alias for m in store.credentials()}


def test_a_writer_cleans_up_every_kind_of_temp_file(tmp_path: Path) -> None:
    # What a kill leaves at each step of the first write: the host key's, the store's, the generation's.
    paths = VaultPaths(tmp_path / "state")
    paths.state_dir.mkdir(mode=0o700)
    for target in (paths.host_key, paths.store, paths.generation):
        (paths.state_dir / f".{target.name}.0123456789abcdef.tmp").write_bytes(b"partial")
    with edit_store(paths, KeySource(paths.host_key), create=True) as draft:
        draft.changed = True
    assert sorted(p.name for p in paths.state_dir.iterdir()) == [
        "credentials.generation",
        "credentials.lock",
        "credentials.store",
        "host.key",
    ]
