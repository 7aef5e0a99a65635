"""HTTP and SSH connection benchmarks of issue 19 against real loopback peers (not part of the test run).

Run as root from the repository root:  python -m tests.bench.bench_net [--runs N] [--only http|ssh]

HTTP: requests/s at 1 and 50 in flight against nginx (a Debian nginx on a loopback port with a
temporary config started here): the HTTP probe, a bare httpx client, ``ab`` and ``wrk`` where installed.
SSH: 50 new connections (one command each) by the probe vs OpenSSH ``ssh`` x50 in parallel.
Every comparison is measured in the same run, alternating, and reported as the median of N runs;
figures are reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from appliance.limits import Limits
from hardening.policy import Policy
from tests.probes.conftest import MemCredential, MemCredentials, loopback_rule, make_ctx, make_job

ENV = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "MIBS": ""}
NGINX_BODY = "hello from nginx\n"


def free_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def run_nginx(directory: Path, workers: int = 1) -> Iterator[str]:
    """Debian's nginx on a free loopback port with a config of its own; yields the URL of a small page."""
    nginx = shutil.which("nginx", path="/usr/sbin:/usr/bin")
    if nginx is None:
        raise SystemExit("nginx is not installed; apt-get install nginx-light")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_tcp_port()
    conf = directory / "nginx.conf"
    temp = {n: directory / n for n in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for p in temp.values():
        p.mkdir(exist_ok=True)
    conf.write_text(
        f"""daemon off;
worker_processes {workers};
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {temp["body"]};
  proxy_temp_path {temp["proxy"]};
  fastcgi_temp_path {temp["fastcgi"]};
  uwsgi_temp_path {temp["uwsgi"]};
  scgi_temp_path {temp["scgi"]};
  server {{
    listen 127.0.0.1:{port};
    location / {{ default_type text/plain; return 200 "{NGINX_BODY.strip()}\\n"; }}
  }}
}}
""",
        encoding="utf-8",
    )
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(directory)], env=ENV)
    url = f"http://127.0.0.1:{port}/hello"
    try:
        deadline = time.monotonic() + 10
        import socket

        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("nginx did not start; see its error.log") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


async def flood(one: Callable[[], Awaitable[object]], in_flight: int, requests: int) -> float:
    """``requests`` calls of ``one`` with ``in_flight`` workers; returns calls per second."""
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return requests / (time.perf_counter() - start)


def http_variants(url: str, state: Path, requests: int) -> dict[str, Callable[[int], float]]:
    import httpx

    from appliance.probes.http import HttpProbe

    port = int(url.rsplit(":", 1)[1].split("/")[0])
    ctx = make_ctx(Policy([loopback_rule(("http",), ((port, port),), ())]), MemCredentials(), state)
    job = make_job("RESTProbe", "http", "127.0.0.1", url=url)

    def probe(in_flight: int) -> float:
        async def go() -> float:
            p = HttpProbe()
            try:
                await p.run(job, ctx)  # warm: the pool's first connection
                return await flood(lambda: p.run(job, ctx), in_flight, requests)
            finally:
                await p.aclose()

        return asyncio.run(go())

    def bare(in_flight: int) -> float:
        async def go() -> float:
            async with httpx.AsyncClient(trust_env=False) as client:

                async def one() -> None:
                    r = await client.get(url)
                    r.raise_for_status()

                await one()
                return await flood(one, in_flight, requests)

        return asyncio.run(go())

    out: dict[str, Callable[[int], float]] = {"HTTP probe": probe, "bare httpx client": bare}
    if shutil.which("ab"):

        def ab(in_flight: int) -> float:
            text = subprocess.run(
                ["ab", "-k", "-q", "-n", str(requests * 2), "-c", str(in_flight), url],
                capture_output=True,
                text=True,
                check=True,
                env=ENV,
            ).stdout
            m = re.search(r"Requests per second:\s+([\d.]+)", text)
            assert m, text  # nosec B101 - a bench script
            return float(m.group(1))

        out["ab -k"] = ab
    if shutil.which("wrk"):

        def wrk(in_flight: int) -> float:
            text = subprocess.run(
                ["wrk", "-t1", f"-c{in_flight}", "-d2s", url],
                capture_output=True,
                text=True,
                check=True,
                env=ENV,
            ).stdout
            m = re.search(r"Requests/sec:\s+([\d.]+)", text)
            assert m, text  # nosec B101
            return float(m.group(1))

        out["wrk -t1"] = wrk
    return out


def bench_http(state: Path, runs: int, requests: int) -> None:
    with run_nginx(state / "nginx") as url:
        variants = http_variants(url, state, requests)
        for in_flight in (1, 50):
            samples: dict[str, list[float]] = {name: [] for name in variants}
            ratios: list[float] = []
            for _ in range(runs):
                for name, fn in variants.items():
                    samples[name].append(fn(in_flight))
                ratios.append(samples["HTTP probe"][-1] / samples["bare httpx client"][-1])
            for name, values in samples.items():
                print(
                    f"http {name} @ {in_flight} in flight: {statistics.median(values):.0f} req/s "
                    f"(runs {fmt(values, 0)})"
                )
            print(
                f"http probe / bare httpx @ {in_flight}: {statistics.median(ratios):.2f}x (same-run median)"
            )


def bench_ssh(state: Path, runs: int, connections: int = 50) -> None:
    from appliance.probes.ssh import SshProbe
    from hardening.known_hosts import KnownHosts, parse_public_key_file
    from tests.daemons import run_sshd

    with run_sshd(state / "sshd") as s:
        KnownHosts(state / "known_hosts").pin(
            "127.0.0.1", s.port, parse_public_key_file(s.host_key_pub.read_bytes(), source="pub")
        )
        creds = MemCredentials(MemCredential("key", "ssh-key", s.user, (s.client_key.read_bytes(),)))
        ctx = make_ctx(
            Policy([loopback_rule(("ssh",), ((s.port, s.port),), ("key",))]), creds, state, Limits()
        )
        job = make_job("SSHCommand", "true", "127.0.0.1", port=str(s.port), credential="key")
        limits = Limits()

        def ours() -> float:
            async def go() -> None:
                probe = SshProbe.from_limits(limits)
                try:
                    await asyncio.gather(*(probe.run(job, ctx) for _ in range(connections)))
                finally:
                    await probe.aclose()

            start = time.perf_counter()
            asyncio.run(go())
            return time.perf_counter() - start

        pub = s.host_key_pub.read_text().split()
        kh = state / "openssh_known_hosts"
        kh.write_text(f"[127.0.0.1]:{s.port} {pub[0]} {pub[1]}\n")
        base = [
            "ssh", "-F", "/dev/null", "-p", str(s.port), "-i", str(s.client_key),
            "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={kh}", "-o", "StrictHostKeyChecking=yes",
            "-o", "IdentitiesOnly=yes", f"{s.user}@127.0.0.1", "true",
        ]  # fmt: skip

        def openssh() -> float:
            start = time.perf_counter()
            procs = [
                subprocess.Popen(base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
                for _ in range(connections)
            ]
            codes = [p.wait() for p in procs]
            if any(codes):
                raise RuntimeError(f"openssh failures: {codes}")
            return time.perf_counter() - start

        ours()  # warm imports and the key cache
        mine: list[float] = []
        theirs: list[float] = []
        ratios: list[float] = []
        for _ in range(runs):
            theirs.append(openssh())
            mine.append(ours())
            ratios.append(mine[-1] / theirs[-1])
        print(f"ssh midbox {connections} new connections: {statistics.median(mine):.3f} s (runs {fmt(mine)})")
        print(
            f"ssh OpenSSH ssh x{connections} in parallel: {statistics.median(theirs):.3f} s (runs {fmt(theirs)})"
        )
        print(f"ssh ratio midbox/OpenSSH: {statistics.median(ratios):.3f}x (same-run, runs {fmt(ratios)})")


def fmt(values: list[float], digits: int = 3) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--only", choices=["http", "ssh"])
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (sshd and nginx fixtures)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.only in (None, "http"):
            bench_http(root, args.runs, args.requests)
        if args.only in (None, "ssh"):
            bench_ssh(root, args.runs)


if __name__ == "__main__":
    main()
