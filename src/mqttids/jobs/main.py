"""The file spark-submit runs: ``spark-submit [--master URL] main.py JOB [OPTIONS]``.

spark-submit needs a Python file as its application; this is that file, in the
installed package (Dataproc gets a copy in Cloud Storage). Run directly as a
module, ``python -m mqttids.jobs.main --where`` prints its own path.
"""

import os
import sys

if __name__ == "__main__":
    # Run as a script, this file's folder heads sys.path; the package's own modules
    # must be imported as mqttids.jobs.*, never as top-level modules from here.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    if sys.argv[1:] == ["--where"]:
        sys.stdout.write(os.path.abspath(__file__) + "\n")
        sys.exit(0)
    from mqttids.jobs.cli import main

    sys.exit(main())
