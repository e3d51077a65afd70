"""Named errors of the Spark jobs; each message says what, the value, and what to do."""

from __future__ import annotations

from mqttids.errors import MqttidsError


class JobError(MqttidsError):
    """Base of the errors a Spark job reports."""


class NoPacketsError(JobError):
    """The warehouse holds no packet rows for the job to work on."""


class JobWarehouseError(JobError):
    """The warehouse URL or its contents do not fit what a Spark job needs."""
