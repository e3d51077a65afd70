"""``python -m mqttids.jobs JOB ...``: the Spark jobs without spark-submit (local[*] unless
``--master`` says otherwise)."""

import sys

from mqttids.jobs.cli import main

sys.exit(main())
