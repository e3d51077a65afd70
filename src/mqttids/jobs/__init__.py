"""Spark jobs that run apart from the CLI process: on ``local[*]``, a standalone cluster,
YARN or Dataproc, with the packaged wheel installed on every node.

- ``ingest-csv``: MQTTset CSV files at any URI into the warehouse;
- ``analyze``: the analytics and profile of ``mqttids analyze``;
- ``train``: the Spark ML models of ``mqttids train``.

Entry points: ``spark-submit .../mqttids/jobs/main.py JOB ...`` (the file is in
the installed package; ``python -m mqttids.jobs.main`` prints its path) or
``python -m mqttids.jobs JOB ...``. See docs/distributed.md.
"""
