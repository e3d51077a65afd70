"""Named errors of the models stage; each message says what to do next."""

from mqttids.errors import MqttidsError


class ModelError(MqttidsError):
    """Base of the models stage's errors."""


class ExportError(ModelError):
    """A saved Spark stage cannot be read into the numpy scorer."""


class BundleNotFoundError(ModelError):
    """No bundle of that name in the models folder."""


class BundleVersionError(ModelError):
    """A bundle was made by another mqttids version."""


class BundleFeaturesError(ModelError):
    """A bundle's feature columns differ from the ones asked for or known."""


class BundleDamagedError(ModelError):
    """A bundle's files are missing or unreadable."""


class DeviceError(ModelError):
    """The requested torch device is not available."""


class UnknownModelError(ModelError):
    """A model kind that mqttids does not train."""
