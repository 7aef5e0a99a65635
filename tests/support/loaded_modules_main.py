"""Run the appliance runtime until SIGTERM, then print which top-level modules it loaded (one JSON list).

    python -m tests.support.loaded_modules_main CONFIG STATE_DIR

For the tests that pin what a running appliance must never import (httpcore and AnyIO, issue 19): this
process imports nothing but the appliance, its test config helpers and the standard library.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from appliance.app import run_appliance
from appliance.probes.base import MemoryAudit
from tests.helpers import TEST_SEAL_KEY, fast_limits, trusted
from tests.support.fakes import NoCredentials


def main() -> int:
    config_path, state_dir = Path(sys.argv[1]), Path(sys.argv[2])
    config = trusted(config_path.read_text(), config_path)

    async def go() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await run_appliance(
            config,
            state_dir=state_dir,
            audit=MemoryAudit(),
            credentials=NoCredentials(),
            stop=stop,
            seal_key=TEST_SEAL_KEY,
            limits=fast_limits(),
        )

    asyncio.run(go())
    loaded = {name.split(".")[0] for name, module in sys.modules.items() if module is not None}
    print(json.dumps(sorted(loaded)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
