"""Run the appliance runtime from a config without its signature, for crash and cluster tests only.

    python -m tests.support.appliance_main CONFIG STATE_DIR [CONCURRENCY]

The signed-config path has its own tests; this harness is never part of the product or the binary.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from appliance.app import run_appliance
from appliance.probes.base import MemoryAudit
from tests.helpers import TEST_SEAL_KEY, fast_limits, trusted
from tests.support.fakes import NoCredentials


def main() -> int:
    config_path, state_dir = Path(sys.argv[1]), Path(sys.argv[2])
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config = trusted(config_path.read_text(), config_path)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_appliance(
            config,
            state_dir=state_dir,
            audit=MemoryAudit(),
            credentials=NoCredentials(),
            stop=stop,
            seal_key=TEST_SEAL_KEY,
            limits=fast_limits(concurrent_probes=concurrency),
        )

    asyncio.run(go())
    return 0


if __name__ == "__main__":
    sys.exit(main())
