"""The Sparkplug B topic namespace: ``spBv1.0/<group>/<type>/<node>[/<device>]`` and STATE."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

NAMESPACE = "spBv1.0"

NODE_MESSAGE_TYPES = frozenset({"NBIRTH", "NDEATH", "NDATA", "NCMD"})
DEVICE_MESSAGE_TYPES = frozenset({"DBIRTH", "DDEATH", "DDATA", "DCMD"})
MESSAGE_TYPES = NODE_MESSAGE_TYPES | DEVICE_MESSAGE_TYPES
STATE = "STATE"

_FORBIDDEN_ID_CHARS = ("/", "+", "#")


@dataclass(frozen=True, slots=True)
class SparkplugTopic:
    """A parsed ``spBv1.0/...`` topic. STATE topics carry only ``host_id``."""

    message_type: str
    group_id: str | None = None
    edge_node_id: str | None = None
    device_id: str | None = None
    host_id: str | None = None

    def __str__(self) -> str:
        return format_topic(
            self.message_type,
            self.group_id,
            self.edge_node_id,
            self.device_id,
            host_id=self.host_id,
        )

    @property
    def is_state(self) -> bool:
        return self.message_type == STATE

    @property
    def is_device(self) -> bool:
        return self.message_type in DEVICE_MESSAGE_TYPES


def check_id(kind: str, value: object) -> str:
    """Return ``value`` if it is a valid Sparkplug id (non-empty, no '/', '+', '#')."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"Sparkplug {kind} must be a non-empty string, got {value!r}")
    for char in _FORBIDDEN_ID_CHARS:
        if char in value:
            raise ValueError(f"Sparkplug {kind} {value!r} must not contain {char!r}")
    return value


def format_topic(
    message_type: str,
    group_id: str | None = None,
    edge_node_id: str | None = None,
    device_id: str | None = None,
    *,
    host_id: str | None = None,
) -> str:
    """Build ``spBv1.0/<group>/<type>/<node>[/<device>]`` or ``spBv1.0/STATE/<host_id>``."""
    if message_type == STATE:
        if group_id is not None or edge_node_id is not None or device_id is not None:
            raise ValueError("a STATE topic takes only host_id")
        return f"{NAMESPACE}/{STATE}/{check_id('host_id', host_id)}"
    if message_type not in MESSAGE_TYPES:
        raise ValueError(
            f"unknown Sparkplug message type {message_type!r}; "
            f"expected one of {', '.join(sorted(MESSAGE_TYPES))} or STATE"
        )
    if host_id is not None:
        raise ValueError(f"host_id is only valid for STATE topics, not {message_type}")
    topic = f"{NAMESPACE}/{check_id('group_id', group_id)}/{message_type}/"
    topic += check_id("edge_node_id", edge_node_id)
    if message_type in DEVICE_MESSAGE_TYPES:
        return f"{topic}/{check_id('device_id', device_id)}"
    if device_id is not None:
        raise ValueError(f"{message_type} is a node message and takes no device_id")
    return topic


@lru_cache(maxsize=8192)  # topics repeat for every message of a node/device
def parse_topic(topic: str) -> SparkplugTopic | None:
    """Parse a Sparkplug B topic.

    Returns None for topics outside the ``spBv1.0`` namespace; raises ValueError for topics
    inside it that are malformed (unknown message type, wrong number of levels, bad ids).
    """
    parts = topic.split("/")
    if parts[0] != NAMESPACE:
        return None
    if len(parts) == 3 and parts[1] == STATE:
        return SparkplugTopic(STATE, host_id=check_id("host_id", parts[2]))
    if len(parts) not in (4, 5):
        raise ValueError(
            f"malformed Sparkplug topic {topic!r}: expected "
            f"{NAMESPACE}/<group_id>/<message_type>/<edge_node_id>[/<device_id>] "
            f"or {NAMESPACE}/STATE/<host_id>"
        )
    message_type = parts[2]
    if message_type not in MESSAGE_TYPES:
        raise ValueError(
            f"malformed Sparkplug topic {topic!r}: unknown message type {message_type!r}"
        )
    is_device = message_type in DEVICE_MESSAGE_TYPES
    if is_device != (len(parts) == 5):
        need = "needs a device_id" if is_device else "takes no device_id"
        raise ValueError(f"malformed Sparkplug topic {topic!r}: {message_type} {need}")
    return SparkplugTopic(
        message_type,
        group_id=check_id("group_id", parts[1]),
        edge_node_id=check_id("edge_node_id", parts[3]),
        device_id=check_id("device_id", parts[4]) if is_device else None,
    )
