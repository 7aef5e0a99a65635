"""Cold start of the frozen binary (not part of the test run).

    python -m tests.bench.bench_start dist/midbox-linux-x86_64 [--runs 10]

Prints medians of: ``midbox --version``; ``midbox run`` from exec to its first answered job (a
HeartbeatProbe queued before the start, so the time covers start-up, config verification, the store,
the first mTLS poll, claim and answer); and the peak RSS of an idle ``midbox run`` (``/usr/bin/time -v``).
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from devinstance import cli as instance_cli
from devinstance.store import Store
from tests.bench.instance import start_instance
from tests.helpers import LOOPBACK_HTTP


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("binary", type=Path)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    binary = str(args.binary.resolve())
    tmp = Path(tempfile.mkdtemp())
    version = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        subprocess.run([binary, "--version"], check=True, capture_output=True)
        version.append(time.perf_counter() - t0)
    print(f"--version: median {statistics.median(version) * 1000:.1f} ms over {args.runs}")

    inst = tmp / "instance"
    instance_cli.init(inst, ["edge-01"])
    server, url = start_instance(inst)
    pki = inst / "pki"
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
    config = tmp / "midbox.toml"
    config.write_text(
        f'version = 1\nexpires = {expires}\n[appliance]\nname = "edge-01"\n[instance]\nurl = "{url}"\n'
        f'ca_file = "{pki / "ca.pem"}"\nclient_cert = "{pki / "appliance-edge-01.crt"}"\n'
        f'client_key = "{pki / "appliance-edge-01.key"}"\npoll_interval_s = 1\n{LOOPBACK_HTTP}'
    )
    subprocess.run(
        [binary, "keygen", "--out", str(tmp / "admin"), "--name", "a", "--no-passphrase"], check=True
    )
    subprocess.run([binary, "config", "sign", str(config), "--key", str(tmp / "admin" / "a.key")], check=True)
    store = Store(inst / "instance.db")
    to_answer = []
    rss = []
    try:
        for i in range(args.runs):
            state = tmp / f"state-{i}"
            subprocess.run(
                [
                    binary,
                    "trust",
                    "init",
                    "--state-dir",
                    str(state),
                    "--pubkey",
                    str(tmp / "admin" / "a.pub"),
                ],
                check=True,
                capture_output=True,
            )
            [hb] = store.enqueue(
                [{"agent": "mid.server.edge-01", "topic": "HeartbeatProbe", "priority": "0"}]
            )
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [
                    "/usr/bin/time",
                    "-v",
                    binary,
                    "run",
                    "-q",
                    "--config",
                    str(config),
                    "--state-dir",
                    str(state),
                ],
                stderr=subprocess.PIPE,
                text=True,
            )
            while not store.query("ecc_queue", f"response_to={hb}", fields=["sys_id"]):
                time.sleep(0.002)
            to_answer.append(time.perf_counter() - t0)
            time.sleep(3)  # idle: polling an empty queue
            for child in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split():
                subprocess.run(["kill", "-TERM", child], check=False)
            _, err = proc.communicate(timeout=60)
            m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
            if m:
                rss.append(int(m.group(1)) / 1024)
    finally:
        store.close()
        server.send_signal(signal.SIGTERM)
        server.wait(10)
    print(f"run to first answered job: median {statistics.median(to_answer) * 1000:.0f} ms over {args.runs}")
    print(f"peak RSS, idle run (incl. start-up): median {statistics.median(rss):.1f} MiB")


if __name__ == "__main__":
    main()
