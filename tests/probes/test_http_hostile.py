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
from tests.helpers import AGENT, LOOPBACK_HTTP, Pki, config_text, dev_instance, fast_limits, inputs, params, run_until, trusted

BOMB_BYTES = 200_000_000  # what the bodies below inflate to


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
        if self.path == "/bad-location":
            self.send_response(302)
            self.send_header("Location", "http://[::1")
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
        jobs = {
            "gzip": params(url=f"{target}/gzip-bomb"),
            "deflate": params(url=f"{target}/deflate-bomb"),
            "raw-deflate": params(url=f"{target}/raw-deflate-bomb"),
            "bad-location": params(url=f"{target}/bad-location"),
            "latin1-header": params(url=f"{target}/latin1-header"),
            "non-ascii-request-header": params(url=f"{target}/latin1-header", headers='{"X-Name": "caf\u00e9"}'),
            "newline-request-header": params(url=f"{target}/latin1-header", headers='{"X-A": "a\\r\\nX-B: b"}'),
        }
        ids = dict(zip(store.enqueue([{"agent": AGENT, "topic": "RESTProbe", "payload": p} for p in jobs.values()]), jobs, strict=True))
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        tracemalloc.start()
        try:
            run_until(
                config,
                lambda: len(inputs(store)) >= len(ids),
                state_dir=state_dir,
                limits=fast_limits(concurrent_probes=1),
                timeout=60,
            )
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        got = {ids[r["response_to"]]: r for r in inputs(store)}
        for kind in ("gzip", "deflate", "raw-deflate"):
            root = SafeET.fromstring(got[kind]["payload"])
            assert got[kind]["error_string"] == "", kind
            result = root.find("result")
            assert result is not None and result.get("truncated") == "true", kind
        assert "invalid Location" in got["bad-location"]["error_string"]
        assert got["latin1-header"]["error_string"] == ""
        for kind in ("non-ascii-request-header", "newline-request-header"):
            assert "printable ASCII" in got[kind]["error_string"], got[kind]["error_string"]
        assert all("internal error" not in r["error_string"] for r in got.values())
        # Three bombs of 200 MB each, one at a time: memory stays near the cap, not the bomb.
        assert peak < 8 * limit, f"peak traced memory {peak / 1e6:.0f} MB"
