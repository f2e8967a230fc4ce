"""Sparkplug B input for a line edge: the edge is a Sparkplug host of its own for its node.

A press line publishes through a Sparkplug edge node (births with aliases, then alias-only
DDATA). An edge registered with a source filter ``spBv1.0/<group>/+/<node>/#`` sees the
node's whole stream (NBIRTH/NDATA/NDEATH, DBIRTH/DDATA/DDEATH) and keeps the host state in
:class:`mfg_assets.uns.sparkplug.SparkplugSession`, the class the gateway uses: births,
alias tables, seq, online state. On a seq gap, an unknown alias or data before a birth it
asks the node for a rebirth with :func:`mfg_assets.uns.sparkplug.rebirth_command`, at most
once per ``min_rebirth_interval_s`` per node (the session reports every offending message).

Readings are what silver makes of the same DDATA (the gateway's Sparkplug rows, typed by
``lake.silver.type_sensor_readings``), so the edge's windows equal the training features:

* machine id = the device id (a node's own NDATA: the node id);
* machine type = the DBIRTH's ``Properties/machine_type`` ("unknown" without it);
* sensor = the metric's birth name, value as float (booleans 1.0/0.0); strings and nulls
  are attributes, not readings;
* time = the metric's own timestamp, else the payload's, else the time it was received.

A DATA message the session flags (seq gap, unknown alias, before its birth) gives no
readings, as the gateway keeps it out of bronze: training never saw it either.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mfg_assets.uns import sparkplug

MACHINE_TYPE_PROPERTY = "Properties/machine_type"
UNKNOWN_TYPE = "unknown"  # the gateway's machineType when a device has none


@dataclass(frozen=True, slots=True)
class Readings:
    """One machine's readings at one time: the arguments of ``RollingWindows.add``."""

    machine_id: str
    machine_type: str
    ts_ms: int
    values: dict[str, float]


@dataclass
class SparkplugUpdate:
    """What one Sparkplug message meant to the edge."""

    readings: list[Readings] = field(default_factory=list)
    rebirth: tuple[str, bytes] | None = None  # an NCMD (topic, payload) to send now
    problem: str | None = None  # why the session wants a rebirth (sent or rate-limited)


def is_sparkplug_topic(topic: str) -> bool:
    return topic.startswith(f"{sparkplug.NAMESPACE}/")


def sparkplug_node(topic_filter: str) -> tuple[str, str] | None:
    """(group, node) of a source filter ``spBv1.0/<group>/+/<node>/#``; None for others."""
    parts = topic_filter.split("/")
    if len(parts) != 5 or parts[0] != sparkplug.NAMESPACE or parts[2] != "+" or parts[4] != "#":
        return None
    try:
        return sparkplug.check_id("group_id", parts[1]), sparkplug.check_id("edge_node_id",
                                                                             parts[3])
    except ValueError:
        return None


def node_filter(group_id: str, edge_node_id: str) -> str:
    """The source filter of every message of one edge node (births, data, deaths)."""
    return (f"{sparkplug.NAMESPACE}/{sparkplug.check_id('group_id', group_id)}/+/"
            f"{sparkplug.check_id('edge_node_id', edge_node_id)}/#")


class SparkplugInput:
    """Host-side state of the nodes an edge listens to, and their DATA as readings.

    Not thread-safe (like the session): the runtime's one worker thread feeds it every
    Sparkplug message in arrival order.
    """

    def __init__(
        self, min_rebirth_interval_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.session = sparkplug.SparkplugSession()
        self.min_rebirth_interval_s = min_rebirth_interval_s
        self._clock = clock
        self._last_rebirth: dict[tuple[str, str], float] = {}
        self.rebirths_sent = 0
        self.rebirths_suppressed = 0  # requests within the interval: no storm
        self.dropped = 0  # DATA messages flagged by the session (no readings taken)

    def handle(self, topic: str, payload: bytes, received_ms: int | None = None) -> SparkplugUpdate:
        """Apply one message; raises SparkplugDecodeError / ValueError for a bad one."""
        event = self.session.handle(topic, payload)
        update = SparkplugUpdate()
        if event.rebirth_needed:
            update.problem = event.rebirth_needed
            update.rebirth = self._rebirth(event.topic)
        if not event.is_data:
            return update
        if event.rebirth_needed or not event.online:
            self.dropped += 1
            return update
        now = int(time.time() * 1000) if received_ms is None else received_ms
        update.readings = self._readings(event, now)
        return update

    def _rebirth(self, topic: sparkplug.SparkplugTopic) -> tuple[str, bytes] | None:
        if topic.group_id is None or topic.edge_node_id is None:
            return None
        node = (topic.group_id, topic.edge_node_id)
        now = self._clock()
        last = self._last_rebirth.get(node)
        if last is not None and now - last < self.min_rebirth_interval_s:
            self.rebirths_suppressed += 1
            return None
        self._last_rebirth[node] = now
        self.rebirths_sent += 1
        return sparkplug.rebirth_command(*node)

    def _readings(self, event: sparkplug.SessionEvent, received_ms: int) -> list[Readings]:
        parsed = event.topic
        machine_type = UNKNOWN_TYPE
        if parsed.device_id is not None:
            info = self.session.device_info(parsed.group_id, parsed.edge_node_id,
                                            parsed.device_id)
            found = info.get(MACHINE_TYPE_PROPERTY)
            machine_type = found if isinstance(found, str) else UNKNOWN_TYPE
        machine_id = parsed.device_id or parsed.edge_node_id
        if event.columns is not None and event.header is not None:
            columns = event.columns
            metrics: Iterable[tuple[Any, Any, Any]] = zip(
                columns.names, columns.values, columns.timestamps, strict=True)
            header = event.header
        else:
            header = event.document
            metrics = ((m.get("name"), None if m.get("is_null") else m.get("value"),
                        m.get("timestamp")) for m in header.get("metrics", []))
        default_ts = header.get("timestamp") or received_ms
        by_time: dict[int, dict[str, float]] = {}
        for name, value, stamp in metrics:
            if name is None or isinstance(value, str) or value is None:
                continue
            if not isinstance(value, int | float):  # arrays, datasets: not sensor readings
                continue
            ts = int(stamp) if stamp is not None else int(default_ts)
            by_time.setdefault(ts, {})[name] = float(value)
        return [Readings(machine_id, machine_type, ts, values)
                for ts, values in sorted(by_time.items())]
