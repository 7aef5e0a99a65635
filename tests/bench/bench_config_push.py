"""Push -> in force: a signed config enqueued on the development instance until the appliance runs
on it (not part of the test run).

    python -m tests.bench.bench_config_push [--poll-interval 5] [--runs 5]

Each run signs the next version (the allowed port changes, so each is a real policy change), inserts
the ``midbox.config`` output record and measures until ``STATE/status.json`` says that version is
running: the wait for the next poll, the claim, verification, the crash-safe write, the reload and
the runner's restart, and its first poll on the new config. Prints every time and the median.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devinstance.configpush import push_records
from tests.helpers import NAME, dev_instance, make_pki
from tests.signing.helpers import install_trust
from tests.support.config_push import in_force
from tests.support.running import appliance, config_bytes, signed_config


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--poll-interval", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    pki = make_pki(tmp / "pki")
    state = tmp / "state"
    state.mkdir(mode=0o700)
    key = Ed25519PrivateKey.generate()
    install_trust(state, [key], appliance_name=NAME)

    def body(url: str, version: int) -> bytes:
        text = config_bytes(url, pki, version, str(20000 + version))
        return text.replace(b"poll_interval_s = 0.1", f"poll_interval_s = {args.poll_interval}".encode())

    times: list[float] = []
    phase = random.Random(18)  # timing jitter only
    with dev_instance(pki, tmp / "db.sqlite") as instance:
        config = signed_config(tmp / "etc", [key], body(instance.url, 1))
        with appliance(config, state, tmp / "run.log"):
            in_force(state, 1, timeout=60)
            for version in range(2, args.runs + 2):
                pushed = signed_config(
                    tmp / f"ws{version}", [key], body(instance.url, version), version=version
                )
                # A push lands anywhere in the poll cycle, as an admin's would.
                time.sleep(phase.uniform(0, args.poll_interval))
                started = time.monotonic()
                instance.state.store.enqueue(push_records(pushed, [NAME]))
                in_force(state, version, timeout=args.poll_interval * 3 + 30)
                times.append(time.monotonic() - started)
    shown = ", ".join(f"{t:.2f}" for t in times)
    print(
        f"poll_interval_s {args.poll_interval:g}: push -> in force median {statistics.median(times):.2f} s ({shown})"
    )


if __name__ == "__main__":
    main()
