"""`python -m jetvox.device.cli`: the same as the `jetvox` console script."""

import sys

from jetvox.device.cli import main

sys.exit(main())
