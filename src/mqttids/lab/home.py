"""The smart home and its attackers, described once for the synthetic writer and the recorder.

The home follows MQTTset's testbed: eight sensors in two rooms, each at its
own rhythm, publishing to one broker. On top of MQTTset it has what a real
home has: QoS 1 and 2 for the alarms, retained state for the door and the
fan, a last will on every sensor, two subscribers (a dashboard on MQTT 5, a
controller on 3.1.1 that switches the fan when motion is seen) and
keep-alive pings on the quiet devices.

``scale`` shrinks every interval: the recorder runs the same home at
``scale=0.05`` so that seconds of wall time hold what minutes of simulated
time do, keeping the mix of message types alike.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from mqttids.lab import codec as mq
from mqttids.lab.codec import V5, V311

CLASSES: tuple[str, ...] = ("legitimate", "dos", "flood", "malformed", "slowite", "bruteforce")

# MQTTset's reduced CSVs, rounded: legitimate 50 %, dos 39 %, bruteforce 4.5 %,
# malformed 3.3 %, slowite 2.8 %, flood 0.4 % (raised from 0.2 % so that a small
# scenario still holds a few flood bursts).
DEFAULT_MIX: dict[str, float] = {
    "legitimate": 0.50, "dos": 0.39, "flood": 0.004, "malformed": 0.033,
    "slowite": 0.028, "bruteforce": 0.045,
}

BROKER_IP = "192.168.1.10"
BROKER_MAC = "dc:a6:32:4f:10:0a"
LEGIT_USER = "home"
LEGIT_PASSWORD = "kitchen-window-42"


def _temperature(rng: random.Random) -> str:
    return f"{rng.gauss(21.5, 1.2):.1f}"


def _humidity(rng: random.Random) -> str:
    return str(int(rng.gauss(48, 6)))


def _light(rng: random.Random) -> str:
    return str(max(0, int(rng.gauss(320, 120))))


def _co_gas(rng: random.Random) -> str:
    return str(int(abs(rng.gauss(8, 3))))


def _motion(rng: random.Random) -> str:
    return "1" if rng.random() < 0.6 else "0"


def _smoke(rng: random.Random) -> str:
    return "1" if rng.random() < 0.02 else "0"


def _door(rng: random.Random) -> str:
    return rng.choice(("open", "closed", "closed", "locked"))


def _fan(rng: random.Random) -> str:
    return str(rng.randint(0, 3))


@dataclass(frozen=True)
class Sensor:
    """One device: where it is, how often it speaks, and how it connects."""

    name: str
    room: str
    periodic: bool  # a fixed period with jitter, or events at random (exponential gaps)
    interval: float  # seconds: the period, or the mean gap between events
    qos: int
    retain: bool
    version: int
    value: Callable[[random.Random], str]
    host: int  # last octet of its address
    credentials: bool = False
    subscriptions: tuple[tuple[str, int], ...] = ()
    keepalive: int = 60

    @property
    def topic(self) -> str:
        return f"home/{self.room}/{self.name}"

    @property
    def status_topic(self) -> str:
        return f"home/{self.room}/{self.name}/status"


@dataclass(frozen=True)
class Subscriber:
    """An application that listens: the dashboard or the controller."""

    name: str
    version: int
    host: int
    subscriptions: tuple[tuple[str, int], ...]
    keepalive: int
    session_minutes: float  # mean time connected before it goes away for a while


SENSORS: tuple[Sensor, ...] = (
    Sensor("temperature", "livingroom", True, 6.0, 0, False, V311, _temperature, 101),
    Sensor("humidity", "livingroom", True, 9.0, 0, False, V311, _humidity, 102),
    Sensor("light", "livingroom", True, 4.0, 0, False, V5, _light, 103),
    Sensor("co-gas", "livingroom", True, 12.0, 1, False, V311, _co_gas, 104,
           credentials=True),
    Sensor("motion", "kitchen", False, 25.0, 0, False, V311, _motion, 105),
    Sensor("smoke", "kitchen", False, 90.0, 2, False, V311, _smoke, 106, credentials=True),
    Sensor("door", "kitchen", False, 45.0, 1, True, V5, _door, 107, credentials=True),
    Sensor("fan", "kitchen", True, 15.0, 0, True, V311, _fan, 108,
           subscriptions=(("home/kitchen/fan/set", 1),)),
)

SUBSCRIBERS: tuple[Subscriber, ...] = (
    Subscriber("dashboard", V5, 50, (("home/#", 1),), 30, 20.0),
    Subscriber("controller", V311, 20,
               (("home/+/smoke", 2), ("home/+/co-gas", 1), ("home/+/motion", 0),
                ("home/+/+/status", 1)), 60, 240.0),
)

FAN_COMMAND_TOPIC = "home/kitchen/fan/set"

# Attackers. Each attack class comes from its own machines on the home network.
ATTACKER_HOSTS: dict[str, tuple[int, ...]] = {
    "dos": (200, 201, 202), "flood": (210,), "malformed": (220,), "slowite": (230,),
    "bruteforce": (240, 241),
}

# What a brute-forcer tries: common IoT user names, then a wordlist of the most
# common passwords (the same kind of list that MQTTset's attacker used).
BRUTE_USERS: tuple[str, ...] = ("admin", "root", "mqtt", "user", LEGIT_USER, "guest",
                                "pi", "test", "iot", "homeassistant")
BRUTE_PASSWORDS: tuple[str, ...] = (
    "123456", "password", "12345678", "qwerty", "123456789", "12345", "1234", "111111",
    "1234567", "dragon", "123123", "baseball", "abc123", "football", "monkey", "letmein",
    "696969", "shadow", "master", "666666", "qwertyuiop", "123321", "mustang", "1234567890",
    "michael", "654321", "superman", "1qaz2wsx", "7777777", "121212", "000000", "qazwsx",
    "123qwe", "killer", "trustno1", "jordan", "jennifer", "zxcvbnm", "asdfgh", "hunter",
    "buster", "soccer", "harley", "batman", "andrew", "tigger", "sunshine", "iloveyou",
    "2000", "charlie", "robert", "thomas", "hockey", "ranger", "daniel", "starwars",
    "klaster", "112233", "george", "computer", "michelle", "jessica", "pepper", "1111",
    "zxcvbn", "555555", "11111111", "131313", "freedom", "777777", "pass", "maggie",
    "159753", "aaaaaa", "ginger", "princess", "joshua", "cheese", "amanda", "summer",
    "love", "ashley", "nicole", "chelsea", "biteme", "matthew", "access", "yankees",
    "987654321", "dallas", "austin", "thunder", "taylor", "matrix", "mosquitto", "raspberry",
    "admin123", "changeme", "default", "harrypotter", "christopher", "12345678910",
    "volleyball", "tinkerbell", "sweetheart", "strawberry",
)

SLOWITE_KEEPALIVE = 65535  # the largest keep-alive MQTT allows: the broker waits 27 h


def connack_accepted(version: int, session_present: bool = False) -> bytes:
    """CONNACK 0 as Mosquitto 2 sends it; in MQTT 5 with topic alias maximum 10 and
    receive maximum 20."""
    props = ((mq.PROP_TOPIC_ALIAS_MAXIMUM, 10), (mq.PROP_RECEIVE_MAXIMUM, 20))
    return mq.connack(session_present=session_present, version=version,
                      props=props if version == mq.V5 else ())


V5_CONNECT_PROPS = ((mq.PROP_SESSION_EXPIRY, 0),)  # what paho-mqtt sends in a v5 CONNECT


def retained_messages(rng: random.Random) -> list[tuple[str, bytes]]:
    """What the broker keeps for the home: every sensor's status and the retained states."""
    kept = [(s.status_topic, b"online") for s in SENSORS]
    kept += [(s.topic, s.value(rng).encode()) for s in SENSORS if s.retain]
    return sorted(kept)


def home_ip(host: int) -> str:
    return f"192.168.1.{host}"


def home_mac(host: int, vendor: str = "b8:27:eb") -> str:
    """A stable MAC per host; sensors and apps use Raspberry Pi's vendor prefix."""
    return f"{vendor}:{host >> 8 & 0xff:02x}:{host & 0xff:02x}:{(host * 37) & 0xff:02x}"


def scaled(seconds: float, scale: float) -> float:
    return seconds * scale


def scaled_keepalive(keepalive: int, scale: float) -> int:
    """A keep-alive in whole seconds, at least 1, shrunk with the home's clock."""
    return max(1, round(keepalive * scale))
