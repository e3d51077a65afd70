"""Models stage: Spark ML and PyTorch classifiers, tuning, evaluation and bundles.

For scoring without Spark (the detector), use :func:`mqttids.models.bundle.load_scorer`.
"""
