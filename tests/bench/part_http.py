"""Group 5, HTTP: requests/s at 1 and 50 in flight against nginx and a Python target; the HTTP probe
and a bare httpx client, each beside ``wrk`` (or ``ab``) on the same target in the same run."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from appliance.probes.http import HttpProbe
from devinstance.sshd import free_port
from hardening.policy import Policy
from tests.bench.common import ENV, Row, Sizes, install, median, tool
from tests.probes.conftest import MemCredentials, loopback_rule, make_ctx, make_job

GROUP = "5 http"
TARGETS = ("nginx", "Python target")
FLIGHTS = (1, 50)
ROWS = tuple(
    f"{who} req/s, {n} in flight, {target}"
    for target in TARGETS
    for n in FLIGHTS
    for who in ("HTTP probe", "bare httpx client")
)

NGINX_CONF = """daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    location / {{ default_type text/plain; return 200 "hello from nginx\\n"; }}
  }}
}}
"""


@contextmanager
def nginx(directory: Path) -> Iterator[str]:
    binary = tool("nginx")
    if binary is None:
        raise FileNotFoundError("nginx")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port(18080)
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(d=directory, port=port), encoding="utf-8")
    proc = subprocess.Popen(
        [binary, "-c", str(conf), "-p", str(directory), "-e", str(directory / "error.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(url, trust_env=False, timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"nginx did not start: {(directory / 'error.log').read_text()[-300:]}"
                    ) from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def python_target() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.target_main"], stdout=subprocess.PIPE, text=True
    )
    try:
        yield proc.stdout.readline().strip()  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.wait(10)


async def flood(one: Callable[[], Awaitable[object]], in_flight: int, requests: int) -> float:
    sem = asyncio.Semaphore(in_flight)

    async def task() -> None:
        async with sem:
            await one()

    start = time.perf_counter()
    await asyncio.gather(*(task() for _ in range(requests)))
    return requests / (time.perf_counter() - start)


def tool_rate(url: str, in_flight: int, seconds: float) -> tuple[str, float] | None:
    """requests/s of wrk (one thread) or else ab, on the same URL."""
    wrk, ab = tool("wrk"), tool("ab")
    if wrk:
        out = subprocess.run(
            [wrk, "-t1", f"-c{in_flight}", f"-d{max(1, round(seconds))}s", url],
            capture_output=True,
            text=True,
            env=ENV,
            check=True,
        ).stdout
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        return ("wrk -t1", float(m.group(1))) if m else None
    if ab:
        n = max(100, int(seconds * 1000))
        out = subprocess.run(
            [ab, "-k", "-q", "-n", str(n), "-c", str(in_flight), url + "/"], capture_output=True, text=True,
            env=ENV, check=True,
        ).stdout  # fmt: skip
        m = re.search(r"Requests per second:\s+([\d.]+)", out)
        return ("ab -k", float(m.group(1))) if m else None
    return None


def bench_target(label: str, base: str, sizes: Sizes) -> Iterator[Row]:
    url = base + "/hello"
    port = int(base.rsplit(":", 1)[1])
    ctx = make_ctx(Policy([loopback_rule(("http",), ((port, port),), ())]), MemCredentials(), sizes.work)
    job = make_job("RESTProbe", "http", "127.0.0.1", url=url)
    for n in FLIGHTS:
        requests = sizes.pick(50, 200 if n == 1 else 1000)

        def probe_run(n: int = n, requests: int = requests) -> float:
            async def go() -> float:
                probe = HttpProbe()
                try:
                    return await flood(lambda: probe.run(job, ctx), n, requests)
                finally:
                    await probe.aclose()

            return asyncio.run(go())

        def bare_run(n: int = n, requests: int = requests) -> float:
            async def go() -> float:
                async with httpx.AsyncClient(trust_env=False) as client:
                    return await flood(lambda: client.get(url), n, requests)

            return asyncio.run(go())

        ours = {who: median([fn() for _ in range(sizes.runs)]) for who, fn in
                (("HTTP probe", probe_run), ("bare httpx client", bare_run))}  # fmt: skip
        theirs = [tool_rate(url, n, sizes.pickf(1, 2)) for _ in range(sizes.runs)]
        got = [t for t in theirs if t]
        for who, rate in ours.items():
            name = f"{who} req/s, {n} in flight, {label}"
            if got:
                ref = median([r for _, r in got])
                yield Row(GROUP, name, rate, "req/s", label, ratio=rate / ref,
                          versus=f"{got[0][0]}: {ref:,.0f} req/s", runs=sizes.runs)  # fmt: skip
            else:
                yield Row(GROUP, name, rate, "req/s", label, versus=install("wrk"), runs=sizes.runs)


def run(sizes: Sizes) -> Iterator[Row]:
    if tool("nginx"):
        with nginx(sizes.work / "nginx") as base:
            yield from bench_target("nginx", base, sizes)
    else:
        yield from (Row(GROUP, r, na=install("nginx")) for r in ROWS if r.endswith("nginx"))
    with python_target() as base:
        yield from bench_target("Python target", base, sizes)
