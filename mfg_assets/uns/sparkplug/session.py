"""Host-side Sparkplug session state: births, alias tables, seq and bdSeq, online state.

The MQTT subscriber feeds ``(topic, payload)`` pairs into :class:`SparkplugSession`; each
gives a :class:`SessionEvent` (a document, or for plain DATA the columns of
:mod:`mfg_assets.uns.sparkplug.columns`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mfg_assets.uns import sparkplug_b_pb2 as _pb
from mfg_assets.uns.sparkplug.columns import MetricColumns, _metric_columns
from mfg_assets.uns.sparkplug.datatypes import SparkplugDecodeError
from mfg_assets.uns.sparkplug.decode import _document, _document_header, _parse
from mfg_assets.uns.sparkplug.topics import STATE, SparkplugTopic, parse_topic

BDSEQ_METRIC = "bdSeq"
# DBIRTH metrics kept as device metadata besides plain string metrics.
DEVICE_INFO_PREFIXES = ("Properties/", "Device Info/")


@dataclass(slots=True)
class _Device:
    online: bool = False
    aliases: dict[int, tuple[str, int]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Node:
    online: bool = False
    bd_seq: int | None = None
    seq: int | None = None  # last seq seen from this node (None: no birth yet)
    aliases: dict[int, tuple[str, int]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    devices: dict[str, _Device] = field(default_factory=dict)


class SessionEvent:
    """What one message meant to the session.

    ``document`` is the decoded payload with alias-only metrics given their birth names and
    datatypes (for STATE, the JSON body). ``online`` is the node's (device's, host's) state
    after the message. ``rebirth_needed`` says why the node should be sent
    :func:`rebirth_command`; the session reports it on every offending message, so callers
    should rate-limit the commands they send. ``stale_death`` marks an NDEATH ignored because
    its bdSeq does not match the current NBIRTH.

    Plain DATA payloads (see :class:`MetricColumns`) come as ``columns`` plus ``header`` (the
    payload's other fields), so that a caller that works on columns builds no per-metric
    dicts; ``document`` is then built from them on first use (and kept).
    """

    __slots__ = ("_doc", "columns", "header", "online", "rebirth_needed", "stale_death", "topic")

    def __init__(
        self,
        topic: SparkplugTopic,
        document: dict[str, Any] | None,
        online: bool,
        rebirth_needed: str | None = None,
        stale_death: bool = False,
        *,
        columns: MetricColumns | None = None,
        header: dict[str, Any] | None = None,
    ) -> None:
        if document is None and (columns is None or header is None):
            raise ValueError("a SessionEvent needs a document, or columns and a header")
        self.topic = topic
        self._doc = document
        self.online = online
        self.rebirth_needed = rebirth_needed
        self.stale_death = stale_death
        self.columns = columns
        self.header = header

    def __repr__(self) -> str:
        return (
            f"SessionEvent(topic={self.topic!r}, online={self.online!r}, "
            f"rebirth_needed={self.rebirth_needed!r}, stale_death={self.stale_death!r}, "
            f"columnar={self.columns is not None})"
        )

    @property
    def document(self) -> dict[str, Any]:
        """The decoded payload (for columns: built on first use, then kept)."""
        if self._doc is None:
            assert self.columns is not None and self.header is not None  # see __init__
            self._doc = {**self.header, "metrics": self.columns.documents()}
        return self._doc

    @property
    def message_type(self) -> str:
        return self.topic.message_type

    @property
    def group_id(self) -> str | None:
        return self.topic.group_id

    @property
    def edge_node_id(self) -> str | None:
        return self.topic.edge_node_id

    @property
    def device_id(self) -> str | None:
        return self.topic.device_id

    @property
    def metrics(self) -> list[dict[str, Any]]:
        return self.document.get("metrics", [])

    @property
    def is_birth(self) -> bool:
        return self.topic.message_type in ("NBIRTH", "DBIRTH")

    @property
    def is_death(self) -> bool:
        return self.topic.message_type in ("NDEATH", "DDEATH")

    @property
    def is_data(self) -> bool:
        return self.topic.message_type in ("NDATA", "DDATA")

    @property
    def is_command(self) -> bool:
        return self.topic.message_type in ("NCMD", "DCMD")


def _alias_table(payload: _pb.Payload) -> dict[int, tuple[str, int]]:
    return {
        m.alias: (m.name, m.datatype)
        for m in payload.metrics
        if m.HasField("alias") and m.HasField("name")
    }


def _metric_value(doc: Mapping[str, Any], name: str) -> Any:
    for metric in doc["metrics"]:
        if metric.get("name") == name:
            return metric["value"]
    return None


def _unresolved_column(columns: MetricColumns) -> str | None:
    if None not in columns.names:
        return None
    alias = columns.aliases[columns.names.index(None)]
    return f"unknown alias {alias}" if alias is not None else "metric with neither name nor alias"


def _unresolved(doc: Mapping[str, Any]) -> str | None:
    for metric in doc["metrics"]:
        if "name" not in metric:
            if "alias" in metric:
                return f"unknown alias {metric['alias']}"
            return "metric with neither name nor alias"
    return None


def _device_info(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {
        metric["name"]: metric["value"]
        for metric in doc["metrics"]
        if "name" in metric
        and (
            metric["datatype"] in ("String", "Text", "UUID")
            or metric["name"].startswith(DEVICE_INFO_PREFIXES)
        )
    }


def _data_event(
    topic: SparkplugTopic,
    payload: _pb.Payload,
    aliases: Mapping[int, tuple[str, int]],
    reason: str | None,
) -> SessionEvent:
    """A DATA message of an online node/device: as columns when plain, else as a document."""
    columns = _metric_columns(payload.metrics, aliases)
    if columns is None:
        doc = _document(payload, aliases)
        return SessionEvent(topic, doc, True, reason or _unresolved(doc))
    header = _document_header(payload)
    return SessionEvent(
        topic,
        None,
        True,
        reason or _unresolved_column(columns),
        columns=columns,
        header=header,
    )


class SparkplugSession:
    """Host-application view of the Sparkplug edge nodes one subscriber sees (spec 3.0).

    Tracks per edge node the NBIRTH bdSeq, the 0..255 message seq, alias tables from NBIRTH
    and DBIRTH, and online state of nodes, devices and STATE hosts. Not thread-safe: use one
    per subscriber.
    """

    def __init__(self) -> None:
        self._nodes: dict[tuple[str, str], _Node] = {}
        self._hosts: dict[str, bool] = {}
        self._handlers: dict[str, Callable[[SparkplugTopic, _pb.Payload], SessionEvent]] = {
            "NBIRTH": self._on_nbirth,
            "NDEATH": self._on_ndeath,
            "NDATA": self._on_ndata,
            "DBIRTH": self._on_dbirth,
            "DDEATH": self._on_ddeath,
            "DDATA": self._on_ddata,
            "NCMD": self._on_command,
            "DCMD": self._on_command,
        }

    # ---- public queries

    def node_online(self, group_id: str, edge_node_id: str) -> bool:
        node = self._nodes.get((group_id, edge_node_id))
        return node is not None and node.online

    def device_online(self, group_id: str, edge_node_id: str, device_id: str) -> bool:
        device = self._device(group_id, edge_node_id, device_id)
        return device is not None and device.online

    def host_online(self, host_id: str) -> bool:
        return self._hosts.get(host_id, False)

    def node_info(self, group_id: str, edge_node_id: str) -> dict[str, Any]:
        """String (and Properties/, Device Info/) metrics of the last NBIRTH; {} if unknown."""
        node = self._nodes.get((group_id, edge_node_id))
        return dict(node.info) if node is not None else {}

    def device_info(self, group_id: str, edge_node_id: str, device_id: str) -> dict[str, Any]:
        """String (and Properties/, Device Info/) metrics of the last DBIRTH; {} if unknown."""
        device = self._device(group_id, edge_node_id, device_id)
        return dict(device.info) if device is not None else {}

    def _device(self, group_id: str, edge_node_id: str, device_id: str) -> _Device | None:
        node = self._nodes.get((group_id, edge_node_id))
        return node.devices.get(device_id) if node is not None else None

    # ---- message handling

    def handle(self, topic: str | SparkplugTopic, payload: bytes) -> SessionEvent:
        """Apply one received message; raises SparkplugDecodeError for a malformed payload
        and ValueError for a topic outside the Sparkplug B namespace."""
        parsed = topic if isinstance(topic, SparkplugTopic) else parse_topic(topic)
        if parsed is None:
            raise ValueError(f"not a Sparkplug B topic: {topic!r}")
        if parsed.message_type == STATE:
            return self._on_state(parsed, payload)
        return self._handlers[parsed.message_type](parsed, _parse(payload))

    def _check_seq(self, node: _Node, topic: SparkplugTopic, seq: int | None) -> str | None:
        if seq is None:
            return f"{topic.message_type} without seq"
        expected = (node.seq + 1) & 0xFF if node.seq is not None else seq
        node.seq = seq  # resync so one gap is reported once
        if seq != expected:
            return f"seq gap: expected {expected}, got {seq}"
        return None

    def _on_nbirth(self, topic: SparkplugTopic, payload: _pb.Payload) -> SessionEvent:
        doc = _document(payload, None)
        node = self._nodes.setdefault((topic.group_id, topic.edge_node_id), _Node())
        bd_seq = _metric_value(doc, BDSEQ_METRIC)
        node.online = True
        node.bd_seq = bd_seq if isinstance(bd_seq, int) else None
        node.seq = doc["seq"]
        node.aliases = _alias_table(payload)
        node.info = _device_info(doc)
        for device in node.devices.values():  # a new node session: devices must re-birth
            device.online = False
            device.aliases = {}
        reason = None if doc["seq"] is not None else "NBIRTH without seq"
        return SessionEvent(topic, doc, True, reason)

    def _on_ndeath(self, topic: SparkplugTopic, payload: _pb.Payload) -> SessionEvent:
        doc = _document(payload, None)
        node = self._nodes.get((topic.group_id, topic.edge_node_id))
        if node is None:
            return SessionEvent(topic, doc, False)
        bd_seq = _metric_value(doc, BDSEQ_METRIC)
        # A will message from an older MQTT session may arrive after the new NBIRTH; one
        # without bdSeq cannot be matched and is ignored too (births without bdSeq: legacy).
        if node.bd_seq is not None and bd_seq != node.bd_seq:
            return SessionEvent(topic, doc, node.online, stale_death=True)
        node.online = False
        node.seq = None
        for device in node.devices.values():
            device.online = False
        return SessionEvent(topic, doc, False)

    def _live_node(self, topic: SparkplugTopic) -> _Node | None:
        node = self._nodes.get((topic.group_id, topic.edge_node_id))
        return node if node is not None and node.online else None

    def _before_birth(self, topic: SparkplugTopic, payload: _pb.Payload) -> SessionEvent:
        reason = f"{topic.message_type} before NBIRTH of {topic.group_id}/{topic.edge_node_id}"
        return SessionEvent(topic, _document(payload, None), False, reason)

    def _on_ndata(self, topic: SparkplugTopic, payload: _pb.Payload) -> SessionEvent:
        node = self._live_node(topic)
        if node is None:
            return self._before_birth(topic, payload)
        reason = self._check_seq(node, topic, payload.seq if payload.HasField("seq") else None)
        return _data_event(topic, payload, node.aliases, reason)

    def _on_dbirth(self, topic: SparkplugTopic, payload: _pb.Payload) -> SessionEvent:
        node = self._live_node(topic)
        if node is None:
            return self._before_birth(topic, payload)
        reason = self._check_seq(node, topic, payload.seq if payload.HasField("seq") else None)
        doc = _document(payload, None)
        device = node.devices.setdefault(topic.device_id, _Device())
        device.online = True
        device.aliases = _alias_table(payload)
        device.info = _device_info(doc)
        return SessionEvent(topic, doc, True, reason)

    def _on_ddata(self, topic: SparkplugTopic, payload: _pb.Payload) -> SessionEvent:
        node = self._live_node(topic)
        if node is None:
            return self._before_birth(topic, payload)
        reason = self._check_seq(node, topic, payload.seq if payload.HasField("seq") else None)
        device = node.devices.get(topic.device_id)
        if device is None or not device.online:
            doc = _document(payload, None)
            return SessionEvent(topic, doc, False, f"DDATA before DBIRTH of {topic.device_id}")
        return _data_event(topic, payload, device.aliases, reason)

    def _on_ddeath(self, topic: SparkplugTopic, payload: _pb.Payload) -> SessionEvent:
        node = self._live_node(topic)
        if node is None:
            return self._before_birth(topic, payload)
        reason = self._check_seq(node, topic, payload.seq if payload.HasField("seq") else None)
        device = node.devices.get(topic.device_id)
        if device is not None:
            device.online = False
        return SessionEvent(topic, _document(payload, None), False, reason)

    def _on_command(self, topic: SparkplugTopic, payload: _pb.Payload) -> SessionEvent:
        # Commands come from host applications: resolve names, leave session state alone.
        node = self._nodes.get((topic.group_id, topic.edge_node_id))
        aliases = None
        if node is not None:
            owner = node.devices.get(topic.device_id) if topic.is_device else node
            aliases = owner.aliases if owner is not None else None
        online = node is not None and node.online
        if topic.is_device:
            online = self.device_online(topic.group_id, topic.edge_node_id, topic.device_id)
        return SessionEvent(topic, _document(payload, aliases), online)

    def _on_state(self, topic: SparkplugTopic, payload: bytes) -> SessionEvent:
        # Sparkplug 3.0 STATE payloads are JSON: {"online": bool, "timestamp": int}.
        try:
            doc = json.loads(payload)
        except (ValueError, TypeError) as exc:
            raise SparkplugDecodeError(f"STATE payload is not JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("online"), bool):
            raise SparkplugDecodeError('STATE payload must be a JSON object with bool "online"')
        self._hosts[topic.host_id] = doc["online"]
        return SessionEvent(topic, doc, doc["online"])
