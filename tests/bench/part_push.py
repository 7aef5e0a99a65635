"""Group 10, config push: a signed config enqueued on the development instance until the appliance
runs on it (its ``status.json`` says that version is running). That covers the wait for the next
poll, the claim, signature and rollback checks, the crash-safe write, the reload, the runner's
restart and its first poll on the new config. Each push changes the allowed port, so each is a real
policy change, and lands at a random moment of the poll cycle, as an admin's would. One source
appliance (`python -m appliance run`); a push may change the poll interval, so one appliance serves
both rows."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devinstance.configpush import push_records
from devinstance.server import DevInstance
from tests.bench.common import Row, Sizes, median
from tests.helpers import NAME, Pki, dev_instance, make_pki
from tests.signing.helpers import install_trust
from tests.support.config_push import in_force
from tests.support.running import appliance, config_bytes, signed_config

GROUP = "10 push"
DEFAULT_POLL_S = 5.0  # appliance.config.model's default poll_interval_s
SHORT_POLL_S = 0.1
ROWS = (
    "push → in force, poll 0.1 s (the appliance's own part)",
    "push → in force, default poll (5 s)",
)


class _Pusher:
    """Signs and enqueues the next config version; each has its own port rule and poll interval."""

    def __init__(self, work: Path, pki: Pki, instance: DevInstance, key: Ed25519PrivateKey) -> None:
        self.work, self.pki, self.instance, self.key = work, pki, instance, key
        self.version = 0

    def signed(self, poll_s: float) -> Path:
        self.version += 1
        body = config_bytes(self.instance.url, self.pki, self.version, str(20000 + self.version))
        body = body.replace(b"poll_interval_s = 0.1", f"poll_interval_s = {poll_s}".encode())
        return signed_config(self.work / f"v{self.version}", [self.key], body, version=self.version)

    def push(self, poll_s: float, state: Path) -> float:
        """Seconds from the enqueue until the new version runs."""
        pushed = self.signed(poll_s)
        started = time.monotonic()
        self.instance.state.store.enqueue(push_records(pushed, [NAME]))
        in_force(state, self.version, timeout=poll_s * 3 + 30)
        return time.monotonic() - started


def run(sizes: Sizes) -> Iterator[Row]:
    pki = make_pki(sizes.work / "pki")
    state = sizes.work / "state"
    state.mkdir(mode=0o700)
    key = Ed25519PrivateKey.generate()
    install_trust(state, [key], appliance_name=NAME)
    phase = random.Random(18)  # the moment in the poll cycle only
    runs = sizes.runs if sizes.quick else max(sizes.runs, 9)  # the random phase needs a few samples
    with dev_instance(pki, sizes.work / "db.sqlite") as instance:
        pusher = _Pusher(sizes.work, pki, instance, key)
        with appliance(pusher.signed(SHORT_POLL_S), state, sizes.work / "run.log"):
            in_force(state, pusher.version, timeout=60)
            for name, poll_s in ((ROWS[0], SHORT_POLL_S), (ROWS[1], sizes.pickf(1.0, DEFAULT_POLL_S))):
                pusher.push(poll_s, state)  # untimed: this push brings the poll interval measured
                took = []
                for _ in range(runs):
                    time.sleep(phase.uniform(0, poll_s))
                    took.append(pusher.push(poll_s, state))
                note = "" if poll_s in (SHORT_POLL_S, DEFAULT_POLL_S) else " (--quick; the full run uses 5 s)"
                yield Row(GROUP, name, median(took), "s", f"poll_interval_s {poll_s:g}{note}, pushed at a "
                          f"random moment of the cycle; {min(took):.2f} to {max(took):.2f} s", runs=runs)  # fmt: skip
