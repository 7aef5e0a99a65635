import sys

from devinstance.cli import main

sys.exit(main())
