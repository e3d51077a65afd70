"""The traffic lab: labelled MQTT traffic made on the spot.

- :func:`write_scenario` (``mqttids lab synth``): a simulated smart home and
  five attacks written as genuine Ethernet/IPv4/TCP/MQTT pcaps, one per
  class, plus their rows from the capture decoder; deterministic for a seed
  and fast enough for ten million packets.
- :func:`record_scenario` (``mqttids lab record``): the same home and attacks
  played against a real Mosquitto on loopback and captured with tcpdump or
  dumpcap, one labelled pcap per class.
"""

from mqttids.lab.home import CLASSES, DEFAULT_MIX
from mqttids.lab.synth import parse_mix, write_scenario

__all__ = ["CLASSES", "DEFAULT_MIX", "parse_mix", "write_scenario"]
