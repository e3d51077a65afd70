"""The model a detector scores with: a bundle's Spark-free scorer."""

from __future__ import annotations


def load_scorer(name: str):
    """The scorer of model bundle ``name`` (see :mod:`mqttids.models.bundle`)."""
    from mqttids.models.bundle import load_scorer as load

    return load(name)
