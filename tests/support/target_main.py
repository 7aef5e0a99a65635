"""The test HTTP target as its own process (benchmarks): prints its URL, serves until killed."""

from __future__ import annotations

import signal
import sys
import threading

from tests.helpers import http_target


def main() -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with http_target() as url:
        print(url, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
