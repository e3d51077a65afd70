"""mqttids: MQTT intrusion detection from captures to alerts."""

__version__ = "0.1.0"
