"""Named errors of the report stage; each message says what, the value, and what to do."""

from __future__ import annotations

from mqttids.errors import MqttidsError


class ReportError(MqttidsError):
    """Base of the report stage's errors."""


class ReportOutputError(ReportError):
    """The report's output folder cannot be made or written."""


class ReportInputError(ReportError):
    """An input named for the report (alerts file, benchmarks file) is missing or unreadable."""


class DashboardError(ReportError):
    """The dashboard cannot bind its address, or was given a value it cannot show."""
