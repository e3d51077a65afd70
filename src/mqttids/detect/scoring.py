"""The model a detector scores with: a bundle's Spark-free scorer.

The scorer itself (the fitted pipeline, logistic regression and random forest
in numpy, the networks in torch) belongs to :mod:`mqttids.models.bundle`; this
module only picks the bundle. ``mqttids train`` names bundles
``KIND-FEATURES`` (``rf-flow``, ``lr-packet``); ``--model rf`` means the
flow-aware ``rf-flow`` when there is no bundle called plainly ``rf``, since
connection context is what a live detector has and a packet model lacks.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mqttids.models import bundle as bundles

log = logging.getLogger(__name__)

DEFAULT_MODELS_DIR = bundles.DEFAULT_MODELS_DIR


def resolve_model(name: str, models_dir: Path = DEFAULT_MODELS_DIR) -> str:
    """The bundle name or path that ``--model NAME`` stands for."""
    if (Path(name) / bundles.METADATA).is_file():
        return name
    present = bundles.list_bundles(models_dir)
    if name in present or name not in bundles.KINDS:
        return name
    for features in ("flow", "packet"):
        for time_delta in (True, False):
            candidate = bundles.bundle_name(name, features, time_delta)
            if candidate in present:
                log.info("--model %s: using bundle %s", name, candidate)
                return candidate
    return name


def load_scorer(name: str, models_dir: Path = DEFAULT_MODELS_DIR) -> bundles.Scorer:
    """The scorer of bundle ``name`` (a bundle name, a model kind, or a bundle folder).

    Raises the models stage's BundleNotFoundError (which lists the bundles
    there are) when nothing matches.
    """
    return bundles.load_scorer(resolve_model(name, models_dir), models_dir)
