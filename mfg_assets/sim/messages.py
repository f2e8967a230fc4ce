"""The simulator's unit of output: one MQTT message with its time and topic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from mfg_assets.uns.topics import MessageClass, UnsTopic, format_topic

JSON = "application/json"
SPARKPLUG = "application/vnd.sparkplug-b+protobuf"

# Channel names as in the AsyncAPI contract; used for counts in the manifest.
CHANNEL_BY_CLASS = {
    MessageClass.SENSORS: "sensorReadings",
    MessageClass.PROCESS: "processRuns",
    MessageClass.INSPECTION: "inspectionImages",
    MessageClass.TELEMETRY: "edgeTelemetry",
}
SPARKPLUG_NODE = "sparkplugNode"
SPARKPLUG_DEVICE = "sparkplugDevice"


@dataclass(frozen=True, slots=True)
class SimMessage:
    ts_ms: int
    topic: str
    payload: bytes
    content_type: str
    channel: str
    doc: dict[str, Any] | None = None  # the JSON document, for JSON messages

    @property
    def is_json(self) -> bool:
        return self.content_type == JSON


def json_message(ts_ms: int, topic: UnsTopic, doc: dict[str, Any]) -> SimMessage:
    return SimMessage(
        ts_ms=ts_ms,
        topic=format_topic(topic),
        payload=orjson.dumps(doc),
        content_type=JSON,
        channel=CHANNEL_BY_CLASS[topic.message_class],
        doc=doc,
    )
