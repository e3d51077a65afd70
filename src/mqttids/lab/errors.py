"""Errors of the traffic lab, each a one-line message with the value and the fix."""

from mqttids.errors import MissingDependencyError, MqttidsError, UsageError


class LabError(MqttidsError):
    """Base of the lab's errors."""


class MixError(UsageError):
    """A ``--mix`` value names an unknown class or its shares do not add up to 1."""


class OutputDirError(LabError):
    """The output folder cannot be used (it is a file, or cannot be created)."""


class CaptureRightsError(LabError):
    """Capturing on the loopback interface is not permitted for this user."""


class CaptureToolError(MissingDependencyError):
    """Neither tcpdump nor dumpcap is installed."""


class BrokerError(LabError):
    """The recorder's own Mosquitto could not be started or did not answer."""


class RecordError(LabError):
    """Recording failed part way (capture died, a driver could not reach the broker)."""
