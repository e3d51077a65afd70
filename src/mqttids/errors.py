"""Named exceptions shared by every stage.

Each message says what was wrong, the value received, and what to do; the CLI
prints it as one line and exits non-zero.
"""


class MqttidsError(Exception):
    """Base of every error that mqttids reports to a user as one line."""

    exit_code = 2


class UsageError(MqttidsError):
    """Options that cannot be used together, or a value out of range."""


class InputNotFoundError(MqttidsError):
    """A file or folder named on the command line does not exist."""


class MissingDependencyError(MqttidsError):
    """An optional dependency (a Python package or a program) is not installed."""
