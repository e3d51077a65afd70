"""`python -m mqttids`: the same as the `mqttids` console script."""

import sys

from mqttids.cli import main

sys.exit(main())
