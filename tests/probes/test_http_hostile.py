"""Hostile HTTP targets: decompression bombs, broken redirects, headers that are not ASCII.

Each gives a clean result (truncated, or an error naming the cause), never "internal error", and a bomb
costs no more memory than the response cap.
"""

from __future__ import annotations

import http.server
import threading
import tracemalloc
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import defusedxml.ElementTree as SafeET

from appliance.limits import Limits
from tests.helpers import (
    AGENT,
    LOOPBACK_HTTP,
    Pki,
    config_text,
    dev_instance,
    fast_limits,
    inputs,
    params,
    run_until,
    trusted,
)

BOMB_BYTES = 200_000_000  # what the bodies below inflate to
BAD_LOCATIONS = ["http://[::1", "http://xn--/", "http://-\u00e9-.example/", "ftp://x/", "http://a/%"]


def bomb(wbits: int) -> bytes:
    """BOMB_BYTES of zeros, compressed a megabyte at a time (so building it costs no memory)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = bytes(1_000_000)
    return b"".join(packer.compress(block) for _ in range(BOMB_BYTES // len(block))) + packer.flush()


class HostileTarget(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bodies: dict[str, tuple[str, bytes]] = {}

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/bad-location/"):
            self.send_response(302)
            self.send_header("Location", BAD_LOCATIONS[int(self.path.rsplit("/", 1)[1])])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/latin1-header":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Name: caf\xe9 \xff\r\nContent-Length: 2\r\n\r\nok")
            return
        encoding, body = self.bodies[self.path]
        self.send_response(200)
        self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def hostile_target() -> Iterator[str]:
    HostileTarget.bodies = {
        "/gzip-bomb": ("gzip", bomb(zlib.MAX_WBITS | 16)),
        "/deflate-bomb": ("deflate", bomb(zlib.MAX_WBITS)),
        "/raw-deflate-bomb": ("deflate", bomb(-zlib.MAX_WBITS)),
        "/plain": ("identity", bytes(2 * Limits().http_response_bytes)),
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HostileTarget)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_hostile_targets_give_clean_results(dev_pki: Pki, tmp_path: Path, state_dir: Path) -> None:
    limit = Limits().http_response_bytes
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, hostile_target() as target:
        store = instance.state.store
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")

        def answer(jobs: dict[str, str]) -> tuple[dict[str, dict[str, str]], int]:
            """Each job's answer, and the peak traced memory while the appliance ran them one by one."""
            ids = store.enqueue([{"agent": AGENT, "topic": "RESTProbe", "payload": p} for p in jobs.values()])
            tracemalloc.start()
            try:
                run_until(
                    config,
                    lambda: set(ids) <= {r["response_to"] for r in inputs(store)},
                    state_dir=state_dir,
                    limits=fast_limits(concurrent_probes=1),
                    timeout=60,
                )
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            by_id = {r["response_to"]: r for r in inputs(store)}
            return {kind: by_id[i] for kind, i in zip(jobs, ids, strict=True)}, peak

        # The cost of three capped, uncompressed bodies, with their base64 results, outbox and posts.
        _, baseline = answer({f"plain-{i}": params(url=f"{target}/plain") for i in range(3)})
        got, peak = answer(
            {
                "gzip": params(url=f"{target}/gzip-bomb"),
                "deflate": params(url=f"{target}/deflate-bomb"),
                "raw-deflate": params(url=f"{target}/raw-deflate-bomb"),
                **{
                    f"bad-location-{i}": params(url=f"{target}/bad-location/{i}")
                    for i in range(len(BAD_LOCATIONS))
                },
                "latin1-header": params(url=f"{target}/latin1-header"),
                "non-ascii-request-header": params(
                    url=f"{target}/latin1-header", headers='{"X-Name": "caf\u00e9"}'
                ),
                "newline-request-header": params(
                    url=f"{target}/latin1-header", headers='{"X-A": "a\\r\\nX-B: b"}'
                ),
            }
        )
        for kind in ("gzip", "deflate", "raw-deflate"):
            root = SafeET.fromstring(got[kind]["payload"])
            assert got[kind]["error_string"] == "", kind
            result = root.find("result")
            assert result is not None and result.get("truncated") == "true", kind
        for i in range(3):  # not URLs; the others are URLs the policy or the resolver refuses
            error = got[f"bad-location-{i}"]["error_string"]
            assert "invalid redirect Location" in error, (BAD_LOCATIONS[i], error)
        assert got["latin1-header"]["error_string"] == ""
        for kind in ("non-ascii-request-header", "newline-request-header"):
            assert "printable ASCII" in got[kind]["error_string"], got[kind]["error_string"]
        assert all("internal error" not in r["error_string"] for r in got.values())
        # Three bombs of 200 MB each cost about what three capped plain bodies cost (the jobs around
        # them add some); inflating a whole 64 KiB chunk at once added over 100 MB here.
        print(f"\npeak traced memory: plain {baseline / 1e6:.0f} MB, bombs {peak / 1e6:.0f} MB")
        assert peak < baseline + 10 * limit, f"{peak / 1e6:.0f} MB against {baseline / 1e6:.0f} MB"


def test_a_bomb_inflates_no_further_than_the_cap() -> None:
    import httpx

    from appliance.probes._httpbody import BoundedBody

    limit = 1_000_000
    raw = bomb(zlib.MAX_WBITS | 16)
    chunks = [raw[i : i + 65536] for i in range(0, len(raw), 65536)]

    def peak_of(feed: object) -> int:
        tracemalloc.start()
        try:
            feed()  # type: ignore[operator]
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    def bounded() -> None:
        body = BoundedBody("gzip", limit)
        for chunk in chunks:
            body.feed(chunk)
            if body.truncated:
                break
        assert body.truncated and body.body() == bytes(limit)

    def unbounded() -> None:  # what httpx's aiter_bytes did with the first chunk
        httpx.Response(200, headers={"Content-Encoding": "gzip"})._get_content_decoder().decode(chunks[0])

    assert peak_of(bounded) < 4 * limit  # the kept body, its join and the comparison
    assert peak_of(unbounded) > 30 * limit
