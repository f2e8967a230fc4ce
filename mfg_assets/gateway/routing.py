"""Validate UNS messages and route them to bronze rows or quarantine (no I/O, no MQTT).

The same router serves the live gateway and the batch loader of replay files, so both
write identical bronze tables. A message is never dropped: it becomes a bronze row, a
device event (Sparkplug births/deaths/commands) or a quarantine row with its reason.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson
import polars as pl

from mfg_assets.lake.names import (
    BRONZE_DEVICE_EVENTS,
    BRONZE_EDGE_PREDICTIONS,
    BRONZE_EDGE_TELEMETRY,
    BRONZE_FEEDBACK,
    BRONZE_INSPECTION_IMAGES,
    BRONZE_PROCESS_RUNS,
    BRONZE_QUARANTINE,
    BRONZE_SENSOR_READINGS,
    BRONZE_VALIDATION_RESULTS,
)
from mfg_assets.lake.registry import table
from mfg_assets.uns import sparkplug
from mfg_assets.uns.contract import Contract
from mfg_assets.uns.topics import TopicError, check_segment

# Channel ids of our plant contract -> bronze table. Another plant's contract brings its
# own mapping (``Router(channel_tables=...)``); a valid message on an unmapped channel is
# quarantined as ``unrouted`` rather than lost.
DEFAULT_CHANNEL_TABLES = {
    "sensorReadings": BRONZE_SENSOR_READINGS,
    "processRuns": BRONZE_PROCESS_RUNS,
    "inspectionImages": BRONZE_INSPECTION_IMAGES,
    "edgeTelemetry": BRONZE_EDGE_TELEMETRY,
    "edgePredictions": BRONZE_EDGE_PREDICTIONS,
    "predictionFeedback": BRONZE_FEEDBACK,
}
SPARKPLUG_SENSOR_TABLE = BRONZE_SENSOR_READINGS
PLACE = ("enterprise", "site", "area", "line", "cell")
UNMATCHED = "(unmatched)"
SPARKPLUG_PREFIX = sparkplug.NAMESPACE + "/"
ASSET_PARAMS = ("machineId", "cameraId", "edgeId", "assetId", "deviceId")

# What the lake's time columns hold, whatever a contract allows: event times become
# microsecond timestamps and a date partition. 1970-01-01 .. 9999-12-31T23:59:59.999Z is the
# range every Delta reader (and Python's datetime) represents; beyond it polars overflows
# (wrapping to 1969) or panics inside the Delta write. The plant's contract is stricter.
LAKE_MIN_MS = 0
LAKE_MAX_MS = 253_402_300_799_999


class Unrepresentable(ValueError):
    """A contract-valid value the lake cannot hold: the message is quarantined alone."""

    def __init__(self, column: str, value: Any) -> None:
        super().__init__(
            f"unrepresentable: column {column} value {value!r} is outside what the lake holds "
            f"(epoch ms {LAKE_MIN_MS}..{LAKE_MAX_MS})"
        )
        self.column, self.value = column, value


def lake_ms(column: str, value: Any) -> int:
    """``value`` as epoch milliseconds the lake can hold, else :class:`Unrepresentable`."""
    try:
        ms = int(value)
    except (TypeError, ValueError, OverflowError):  # a string, nan, inf, a list ...
        raise Unrepresentable(column, value) from None
    if not LAKE_MIN_MS <= ms <= LAKE_MAX_MS or (value.__class__ is float and ms != value):
        raise Unrepresentable(column, value)
    return ms


def _reading_stamps(readings: Any) -> None:
    """Reading timestamps become silver's event times too: check them like ``timestamp``."""
    if readings.__class__ is not list:
        return
    for reading in readings:
        if reading.__class__ is dict and reading.get("timestamp") is not None:
            lake_ms("readings[].timestamp", reading["timestamp"])


@functools.lru_cache(maxsize=65536)  # topics repeat for every message of a machine
def _segment_problem(values: tuple[tuple[str, str], ...]) -> str | None:
    """Why a topic's ISA-95 parameters are no safe segments (see uns.topics), or None."""
    for name, value in values:
        try:
            check_segment(name, value)
        except TopicError as exc:
            return f"bad_topic: {exc}"
    return None


def message_id(topic: str, payload: bytes) -> str:
    """Same topic and bytes -> same id, so a redelivered message is recognisably the same."""
    digest = hashlib.blake2b(topic.encode(), digest_size=16)
    digest.update(payload)
    return digest.hexdigest()


def payload_text(payload: bytes) -> str:
    """Keep a refused payload readable when it is text, losslessly encoded when it is not."""
    try:
        text = payload.decode("utf-8")
        if text.isprintable() or all(c.isprintable() or c in "\r\n\t" for c in text):
            return text
    except UnicodeDecodeError:
        pass
    return "base64:" + base64.b64encode(payload).decode("ascii")


# Quarantined payloads above this size are kept as a blob file (see :class:`BlobStore`)
# and referenced from the quarantine row, so one oversize message cannot bloat a batch.
INLINE_PAYLOAD_LIMIT = 256 * 1024


class BlobStore:
    """Content-addressed files for oversize refused payloads (local folder or object store)."""

    def __init__(self, root: str, storage_options: dict[str, str] | None = None) -> None:
        from pyarrow import fs

        self.root = root.rstrip("/") + "/_blobs/quarantine"
        self._fs, self._base = fs.FileSystem.from_uri(self.root)
        self._fs.create_dir(self._base, recursive=True)

    def put(self, payload: bytes) -> str:
        digest = hashlib.sha256(payload).hexdigest()
        path = f"{self._base}/{digest}"
        with self._fs.open_output_stream(path) as out:
            out.write(payload)
        return f"{self.root}/{digest}"


@dataclass
class Batch:
    """Rows collected since the last :meth:`Router.take`, ready to append to Delta."""

    batch_id: str
    tables: dict[str, pl.DataFrame]
    received: int
    valid: int
    invalid: int
    errors: Counter[str] = field(default_factory=Counter)


class Router:
    def __init__(
        self,
        contract: Contract,
        *,
        source: str,
        enterprise: str = "acme",
        channel_tables: dict[str, str] | None = None,
        session: sparkplug.SparkplugSession | None = None,
        blobs: BlobStore | None = None,
    ) -> None:
        self.blobs = blobs
        self.contract = contract
        self.source = source
        self.enterprise = enterprise
        self.channel_tables = channel_tables or DEFAULT_CHANNEL_TABLES
        self.session = session or sparkplug.SparkplugSession()
        sparkplug.register_contract_decoder()  # Sparkplug payloads validate as decoded documents
        self.rebirth_requests: list[tuple[str, str, str]] = []  # (group, node, reason)
        self._reset()

    def _reset(self) -> None:
        self._rows: dict[str, list[dict[str, Any]]] = {}
        # (topic, payload, received_ms) of each row, to quarantine a row the lake refuses
        self._origins: dict[str, list[tuple[str | None, bytes, int]]] = {}
        self._origin: tuple[str | None, bytes, int] = (None, b"", 0)
        self._received = 0
        self._valid = 0
        self._invalid = 0
        self._errors: Counter[str] = Counter()
        self._last_error = ""
        # (minute start ms, channel) -> [received, valid, invalid, Counter of reasons]
        self._stats: dict[tuple[int, str], list[Any]] = {}

    def _count(self, received_ms: int, channel: str, landed: bool, refused: bool) -> None:
        key = (received_ms - received_ms % 60_000, channel)
        entry = self._stats.get(key)
        if entry is None:
            entry = self._stats[key] = [0, 0, 0, Counter()]
        entry[0] += 1
        if landed:
            entry[1] += 1
        elif refused:
            entry[2] += 1
            entry[3][self._last_error] += 1

    # -- routing -----------------------------------------------------------------------

    def route(self, topic: str, payload: bytes, received_ms: int) -> bool:
        """Route one message; True when it landed as data, False when quarantined."""
        self._received += 1
        invalid_before = self._invalid
        self._origin = (topic, payload, received_ms)
        if topic.startswith(SPARKPLUG_PREFIX):
            # Decode once, in the session (aliases resolved), then check that document.
            match = self.contract.match(topic)
            channel_id = match[0].id if match is not None else UNMATCHED
            if match is None:
                step = partial(
                    self._route_checked,
                    result=self.contract.check(topic, payload),
                    channel_id=channel_id,
                )
            else:
                step = self._route_sparkplug
        else:
            result = self.contract.check(topic, payload)
            channel_id = result.channel.id if result.channel is not None else UNMATCHED
            step = partial(self._route_checked, result=result, channel_id=channel_id)
        try:
            landed = step(topic, payload, received_ms)
        except Unrepresentable as exc:  # valid, maybe, but the lake cannot hold it
            self._quarantine(topic, payload, received_ms, "lake", str(exc))
            landed = False
        except Exception as exc:  # a bug must not take a long-running service down with it
            reason = f"internal: {type(exc).__name__}: {exc}"
            self._quarantine(topic, payload, received_ms, "internal", reason)
            landed = False
        self._count(received_ms, channel_id, landed, self._invalid > invalid_before)
        return landed

    def _route_checked(
        self, topic: str, payload: bytes, received_ms: int, result: Any, channel_id: str
    ) -> bool:
        if result.errors:
            reason = "; ".join(result.errors)
            self._quarantine(topic, payload, received_ms, "contract", reason)
            return False
        target = self.channel_tables.get(channel_id)
        if target is None:
            reason = f"unrouted: channel {channel_id!r} has no bronze table"
            self._quarantine(topic, payload, received_ms, "routing", reason)
            return False
        document = result.document or {}
        params = result.params or {}
        problem = _segment_problem(tuple(params.items())) if params else None
        if problem is not None:
            self._quarantine(topic, payload, received_ms, "topic", problem)
            return False
        row = self._bronze_row(topic, channel_id, payload, received_ms, document, params)
        self._add(target, row)
        self._valid += 1
        return True

    def _bronze_row(
        self,
        topic: str,
        channel: str,
        payload: bytes,
        received_ms: int,
        document: dict[str, Any],
        params: dict[str, str],
    ) -> dict[str, Any]:
        asset = next((params[p] for p in ASSET_PARAMS if p in params), topic.rsplit("/", 2)[-2])
        if document.__class__ is not dict:
            document = {}
        event_ms = lake_ms("timestamp", document.get("timestamp", received_ms))
        _reading_stamps(document.get("readings"))
        return {
            "message_id": message_id(topic, payload),
            "source": self.source,
            "topic": topic,
            "channel": channel,
            "received_ms": received_ms,
            "event_ms": event_ms,
            **{name: params.get(name) for name in PLACE},
            "asset_id": asset,
            "payload": payload.decode("utf-8"),
        }

    def _route_sparkplug(self, topic: str, payload: bytes, received_ms: int) -> bool:
        try:
            event = self.session.handle(topic, payload)
        except (sparkplug.SparkplugDecodeError, ValueError) as exc:
            self._quarantine(topic, payload, received_ms, "decode", f"bad_payload: {exc}")
            return False
        errors = self._sparkplug_errors(topic, payload, event)
        if errors:
            self._quarantine(topic, payload, received_ms, "contract", "; ".join(errors))
            return False
        parsed = event.topic
        if event.rebirth_needed:
            self.rebirth_requests.append(
                (parsed.group_id, parsed.edge_node_id, event.rebirth_needed)
            )
            self._device_event(
                topic, payload, received_ms, event, "REBIRTH_REQUEST", event.rebirth_needed
            )
        kind = parsed.message_type
        if kind in ("NBIRTH", "DBIRTH", "NDEATH", "DDEATH", "NCMD", "DCMD", "STATE"):
            self._device_event(topic, payload, received_ms, event, kind, "")
            self._valid += 1
            return True
        if event.rebirth_needed:
            reason = f"sparkplug: {event.rebirth_needed}; rebirth requested, data kept here"
            self._quarantine(topic, payload, received_ms, "sparkplug", reason, count=False)
            self._invalid += 1
            return False
        self._add(SPARKPLUG_SENSOR_TABLE, self._sparkplug_row(topic, payload, received_ms, event))
        self._valid += 1
        return True

    def _sparkplug_errors(
        self, topic: str, payload: bytes, event: sparkplug.SessionEvent
    ) -> list[str]:
        """The contract's verdict on the decoded document. A plain DATA message comes as
        metric columns: when the contract is proven to accept them (column checks), no
        per-metric documents are built; otherwise the whole document is checked as is."""
        columns, header = event.columns, event.header
        if (
            columns is not None
            and header is not None
            and self.contract.accepts_columns(
                topic, len(payload), header, "metrics", columns.as_mapping()
            )
        ):
            return []
        return self.contract.check(topic, payload, decoded=event.document).errors

    def _sparkplug_row(
        self, topic: str, payload: bytes, received_ms: int, event: sparkplug.SessionEvent
    ) -> dict[str, Any]:
        parsed = event.topic
        info: dict[str, Any] = {}
        if parsed.device_id:
            info = self.session.device_info(parsed.group_id, parsed.edge_node_id, parsed.device_id)
        if event.columns is not None and event.header is not None:
            fields = event.header
            stamps = event.columns.timestamps
            if stamps.count(None) != len(stamps):  # the usual DDATA has none
                _reading_stamps([{"timestamp": stamp} for stamp in stamps])
            readings, attributes = _column_readings(event.columns)
        else:
            fields = event.document
            readings, attributes = _document_readings(fields.get("metrics", []))
            _reading_stamps(readings)
        timestamp = lake_ms("timestamp", fields.get("timestamp") or received_ms)
        normalized = {
            "timestamp": timestamp,
            "machineType": info.get("Properties/machine_type", "unknown"),
            "readings": readings,
            "sparkplug": {"seq": fields.get("seq"), "attributes": attributes},
        }
        return {
            "message_id": message_id(topic, payload),
            "source": self.source,
            "topic": topic,
            "channel": "sparkplugDevice" if parsed.device_id else "sparkplugNode",
            "received_ms": received_ms,
            "event_ms": timestamp,
            "enterprise": self.enterprise,
            "site": parsed.group_id,
            "area": info.get("Properties/area"),
            "line": info.get("Properties/line"),
            "cell": info.get("Properties/cell"),
            "asset_id": parsed.device_id or parsed.edge_node_id,
            "payload": orjson.dumps(normalized).decode(),
        }

    def _device_event(
        self, topic: str, payload: bytes, received_ms: int, event: Any, kind: str, detail: str
    ) -> None:
        parsed = event.topic
        timestamp = (
            lake_ms("timestamp", event.document.get("timestamp") or received_ms)
            if event.document
            else received_ms
        )
        info = (
            detail
            or orjson.dumps(
                {
                    m.get("name"): m.get("value")
                    for m in event.document.get("metrics", [])
                    # a metric known only by its alias has no name to key the detail by
                    if m.get("name") is not None
                    and isinstance(m.get("value"), str | int | float | bool)
                }
            ).decode()
        )
        self._add(
            BRONZE_DEVICE_EVENTS,
            {
                "message_id": message_id(topic, payload),
                "received_ms": received_ms,
                "event_ms": timestamp,
                # a host application (STATE) has no group: its id stands in the node column
                "group_id": parsed.group_id or "(host)",
                "edge_node_id": parsed.edge_node_id or parsed.host_id,
                "device_id": parsed.device_id,
                "event_type": kind,
                "detail": info,
            },
        )

    def _quarantine(
        self,
        topic: str | None,
        payload: bytes,
        received_ms: int,
        stage: str,
        reason: str,
        *,
        count: bool = True,
    ) -> None:
        if count:
            self._invalid += 1
        code = reason.split(":", 1)[0].strip() if ":" in reason else stage
        self._errors[code] += 1
        self._last_error = _error_family(reason)
        self._add(
            BRONZE_QUARANTINE,
            {
                "quarantine_id": message_id(f"{stage}|{topic}|{received_ms}", payload),
                "source": self.source,
                "topic": topic,
                "received_ms": received_ms,
                "stage": stage,
                "reason_code": code,
                "reason": reason[:2000],
                "payload": self._kept_payload(payload),
            },
        )

    def _kept_payload(self, payload: bytes) -> str:
        if len(payload) <= INLINE_PAYLOAD_LIMIT or self.blobs is None:
            return payload_text(payload)
        return f"blob:{len(payload)}:{self.blobs.put(payload)}"

    def quarantine_raw(self, payload: bytes, received_ms: int, reason: str) -> None:
        """Refuse something that never became a topic+payload pair (e.g. a bad replay line)."""
        self._received += 1
        self._origin = (None, payload, received_ms)
        self._quarantine(None, payload, received_ms, "input", reason)
        self._count(received_ms, UNMATCHED, landed=False, refused=True)

    def _add(self, table_name: str, row: dict[str, Any]) -> None:
        self._rows.setdefault(table_name, []).append(row)
        self._origins.setdefault(table_name, []).append(self._origin)

    def quarantine_message(
        self, topic: str, payload: bytes, received_ms: int, stage: str, reason: str
    ) -> None:
        """Refuse a received message outside routing (e.g. after its Delta write failed)."""
        self._received += 1
        self._origin = (topic, payload, received_ms)
        self._quarantine(topic, payload, received_ms, stage, reason)
        self._count(received_ms, UNMATCHED, landed=False, refused=True)

    # -- batching ----------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return self._received

    def take(self, batch_id: str) -> Batch:
        """Everything routed since the last take, as frames in each table's schema."""
        frames = {}
        # the quarantine table last: converting another table may add rows to it
        names = sorted(self._rows, key=lambda name: name == BRONZE_QUARANTINE)
        for name in names:
            rows = self._rows[name]
            if rows:
                frames[name] = self._frame_rows(name, rows, batch_id)
        if self._stats:
            frames[BRONZE_VALIDATION_RESULTS] = self._validation_frame(batch_id)
        batch = Batch(batch_id, frames, self._received, self._valid, self._invalid, self._errors)
        self._reset()
        return batch

    def _frame_rows(
        self, table_name: str, rows: list[dict[str, Any]], batch_id: str
    ) -> pl.DataFrame:
        """The rows as one frame; when the lake cannot take one of them (a value no check
        above foresaw), each row is converted on its own and the ones that fail are
        quarantined with the column and value, so the rest of the batch still commits."""
        try:
            return _frame(table_name, rows, batch_id)
        except BaseException as exc:  # polars panics are BaseExceptions (pyo3)
            if table_name == BRONZE_QUARANTINE or isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
        kept = []
        for row, origin in zip(rows, self._origins[table_name], strict=True):
            try:
                _frame(table_name, [row], batch_id)
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    raise
                column, value = _failing_column(table_name, row, batch_id)
                topic, payload, received_ms = origin
                self._valid -= 1
                self._quarantine(
                    topic, payload, received_ms, "lake", str(Unrepresentable(column, value))
                )
                stats = self._stats.get(
                    (received_ms - received_ms % 60_000, row.get("channel", ""))
                )
                if stats is not None:
                    stats[1] -= 1
                    stats[2] += 1
                    stats[3][self._last_error] += 1
                continue
            kept.append(row)
        return _frame(table_name, kept, batch_id)

    def _validation_frame(self, batch_id: str) -> pl.DataFrame:
        rows = [
            {
                "minute_ms": minute,
                "channel": channel,
                "source": self.source,
                "received": received,
                "valid": valid,
                "invalid": invalid,
                "top_errors": orjson.dumps(dict(reasons.most_common(5))).decode(),
            }
            for (minute, channel), (received, valid, invalid, reasons) in self._stats.items()
        ]
        frame = pl.DataFrame(rows).with_columns(_ms(pl.col("minute_ms")).alias("minute"))
        return _frame(BRONZE_VALIDATION_RESULTS, frame.drop("minute_ms").to_dicts(), batch_id)


Readings = tuple[list[dict[str, Any]], dict[str, Any]]


def _document_readings(metrics: list[dict[str, Any]]) -> Readings:
    """Numeric (and boolean) metrics as readings; the other named metrics as attributes."""
    readings, attributes = [], {}
    for metric in metrics:
        value = metric.get("value")
        name = metric.get("name")
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, int | float) and not metric.get("is_null"):
            reading = {"sensor": name, "value": float(value)}
            if metric.get("timestamp") is not None:
                reading["timestamp"] = metric["timestamp"]
            readings.append(reading)
        elif name is not None:
            attributes[name] = value
    return readings, attributes


def _column_readings(columns: sparkplug.MetricColumns) -> Readings:
    """What :func:`_document_readings` makes of the same metrics as documents. Column values
    are int, float, bool or str and never null, so a non-str value is a reading."""
    names, values, stamps = columns.names, columns.values, columns.timestamps
    if str not in set(map(type, values)) and stamps.count(None) == len(stamps):
        # the usual DDATA: numbers without their own timestamps
        return [{"sensor": n, "value": float(v)} for n, v in zip(names, values, strict=True)], {}
    readings, attributes = [], {}
    for name, value, stamp in zip(names, values, stamps, strict=True):
        if value.__class__ is str:
            if name is not None:
                attributes[name] = value
            continue
        reading = {"sensor": name, "value": float(value)}
        if stamp is not None:
            reading["timestamp"] = stamp
        readings.append(reading)
    return readings, attributes


def _error_family(reason: str) -> str:
    """A reason without its per-message details, so that equal problems count together."""
    head = reason.split(";", 1)[0]
    for marker in (" at byte ", " matches topic ", " of ", " line "):
        head = head.split(marker, 1)[0]
    return head[:200]


def _frame(table_name: str, rows: list[dict[str, Any]], batch_id: str) -> pl.DataFrame:
    spec = table(table_name)
    frame = pl.DataFrame(rows, infer_schema_length=None)
    conversions = [pl.lit(batch_id).alias("ingest_batch_id")]
    if "received_ms" in frame.columns:
        conversions.append(_ms(pl.col("received_ms")).alias("received_at"))
    if "event_ms" in frame.columns:
        event_time = _ms(pl.col("event_ms"))
        conversions += [event_time.alias("event_time"), event_time.dt.date().alias("event_date")]
    frame = frame.with_columns(conversions)
    for name, dtype in spec.polars_schema.items():
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype).alias(name))
    return frame.select(pl.col(name).cast(dtype) for name, dtype in spec.polars_schema.items())


def _failing_column(table_name: str, row: dict[str, Any], batch_id: str) -> tuple[str, Any]:
    """The first column of ``row`` that does not convert on its own (for the reason)."""
    for name, value in row.items():
        try:
            _frame(table_name, [{name: value}], batch_id)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            return name, value
    return "(row)", None


def _ms(expr: pl.Expr) -> pl.Expr:
    return pl.from_epoch(expr, time_unit="ms").dt.replace_time_zone("UTC").dt.cast_time_unit("us")


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)
