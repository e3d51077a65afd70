"""Named errors of the detect stage; each message says what to do next."""

from mqttids.errors import MqttidsError


class DetectError(MqttidsError):
    """Base of the detect stage's errors."""


class SourceError(DetectError):
    """The capture source cannot be opened or read (a bad name, a missing program)."""


class CaptureProgramError(SourceError):
    """The capture program started for ``iface:NAME`` failed or stopped early."""


class ScorerError(DetectError):
    """The model's scorer returned something the detector cannot use."""
