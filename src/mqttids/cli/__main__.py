"""`python -m mqttids.cli`: the same as the `mqttids` console script."""

import sys

from mqttids.cli import main

sys.exit(main())
