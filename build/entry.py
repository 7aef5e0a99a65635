"""The frozen binary's entry point: the same as ``python -m appliance`` and the ``midbox`` script."""

import sys

from appliance.cli import main

sys.exit(main())
