"""Sparkplug B 3.0 codec: topic namespace, payload encode/decode and host-side session state.

Plain functions and classes only: no MQTT client, no Dagster. The MQTT subscriber feeds
``(topic, payload)`` pairs into :class:`SparkplugSession`; contract validation uses
:func:`decode_for_contract`.

Decoded payloads are plain JSON-able documents::

    {"timestamp": int | None, "seq": int | None, "uuid"?: str, "body"?: str (base64),
     "metrics": [{"name"?, "alias"?, "timestamp"?, "datatype": "Double", "value": ...,
                  "is_null"?: True, "is_historical"?: True, "is_transient"?: True,
                  "properties"?: {...}, "metadata"?: {...}, "unsupported"?: True}]}

Value mapping: integers, floats, booleans and strings as Python scalars; DateTime as int
milliseconds since the epoch; Bytes/File as base64 text; DataSet as
``{"columns", "types", "rows"}``; Template as a nested dict; numeric, DateTime and String
arrays as lists. BooleanArray and extension values are passed through (base64 / None) and
flagged ``"unsupported": True``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

from google.protobuf.message import DecodeError

from mfg_assets.uns import sparkplug_b_pb2 as _pb

NAMESPACE = "spBv1.0"
CONTENT_TYPE = "application/vnd.sparkplug-b+protobuf"

NODE_MESSAGE_TYPES = frozenset({"NBIRTH", "NDEATH", "NDATA", "NCMD"})
DEVICE_MESSAGE_TYPES = frozenset({"DBIRTH", "DDEATH", "DDATA", "DCMD"})
MESSAGE_TYPES = NODE_MESSAGE_TYPES | DEVICE_MESSAGE_TYPES
STATE = "STATE"

BDSEQ_METRIC = "bdSeq"
REBIRTH_METRIC = "Node Control/Rebirth"
# DBIRTH metrics kept as device metadata besides plain string metrics.
DEVICE_INFO_PREFIXES = ("Properties/", "Device Info/")

_FORBIDDEN_ID_CHARS = ("/", "+", "#")

DataType = _pb.DataType
_TYPE_NAMES: dict[int, str] = {v.number: v.name for v in _pb.DataType.DESCRIPTOR.values}
_TYPE_CODES: dict[str, int] = {name: code for code, name in _TYPE_NAMES.items()}
_STRING_TYPES = frozenset({DataType.String, DataType.Text, DataType.UUID})


class SparkplugDecodeError(ValueError):
    """Bytes that are not a well-formed Sparkplug B payload."""


# --------------------------------------------------------------------------- topics


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


# --------------------------------------------------------------------------- decoding


def _text(value: str | bytes) -> str:
    # upb hands back bytes for proto2 string fields holding invalid UTF-8.
    if value.__class__ is bytes:
        raise SparkplugDecodeError("string field is not valid UTF-8")
    return value  # type: ignore[return-value]


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _type_name(code: int) -> str:
    return _TYPE_NAMES.get(code) or f"Unknown({code})"


def _signed_decoder(bits: int) -> Callable[[int], int]:
    # Int8/16/32 travel in a uint32 (Int64 in a uint64) as two's complement; senders differ
    # in sign-extending to 32 bits (Java/C) or only to N bits (Python), so mask to N first.
    mask, sign = (1 << bits) - 1, 1 << (bits - 1)

    def convert(raw: int) -> int:
        raw &= mask
        return raw - mask - 1 if raw & sign else raw

    return convert


def _unsigned_decoder(bits: int) -> Callable[[int], int] | None:
    if bits == 64:
        return None  # uint64 on the wire already bounds it
    top = (1 << bits) - 1

    def convert(raw: int) -> int:
        if raw > top:
            raise SparkplugDecodeError(f"value {raw} out of range for UInt{bits}")
        return raw

    return convert


_ARRAY_FORMATS: dict[int, str] = {
    DataType.Int8Array: "b",
    DataType.Int16Array: "h",
    DataType.Int32Array: "i",
    DataType.Int64Array: "q",
    DataType.UInt8Array: "B",
    DataType.UInt16Array: "H",
    DataType.UInt32Array: "I",
    DataType.UInt64Array: "Q",
    DataType.FloatArray: "f",
    DataType.DoubleArray: "d",
    DataType.DateTimeArray: "Q",
}


def _array_decoder(fmt: str) -> Callable[[bytes], list[Any]]:
    size = struct.calcsize("<" + fmt)

    def convert(raw: bytes) -> list[Any]:
        count, rest = divmod(len(raw), size)
        if rest:
            raise SparkplugDecodeError(
                f"packed array of {len(raw)} bytes is not a multiple of the {size}-byte element"
            )
        return list(struct.unpack(f"<{count}{fmt}", raw))

    return convert


def _decode_string_array(raw: bytes) -> list[str]:
    if not raw:
        return []
    parts = raw.split(b"\0")
    if parts[-1] == b"":  # each string is NUL-terminated
        parts.pop()
    try:
        return [part.decode("utf-8") for part in parts]
    except UnicodeDecodeError as exc:
        raise SparkplugDecodeError("StringArray element is not valid UTF-8") from exc


_INTS = frozenset({"int_value", "long_value"})
_FLOATS = frozenset({"float_value", "double_value"})
_BOOL = frozenset({"boolean_value"})
_STRING = frozenset({"string_value"})
_BYTES = frozenset({"bytes_value"})

# datatype -> (oneof fields allowed to carry it, converter or None for identity).
# Lenient only where lossless: int/long for integers, float/double for reals.
_VALUE_DECODERS: dict[int, tuple[frozenset[str], Callable[[Any], Any] | None]] = {
    DataType.Int8: (_INTS, _signed_decoder(8)),
    DataType.Int16: (_INTS, _signed_decoder(16)),
    DataType.Int32: (_INTS, _signed_decoder(32)),
    DataType.Int64: (_INTS, _signed_decoder(64)),
    DataType.UInt8: (_INTS, _unsigned_decoder(8)),
    DataType.UInt16: (_INTS, _unsigned_decoder(16)),
    DataType.UInt32: (_INTS, _unsigned_decoder(32)),
    DataType.UInt64: (_INTS, _unsigned_decoder(64)),
    DataType.Float: (_FLOATS, None),
    DataType.Double: (_FLOATS, None),
    DataType.Boolean: (_BOOL, None),
    DataType.String: (_STRING, _text),
    DataType.Text: (_STRING, _text),
    DataType.UUID: (_STRING, _text),
    DataType.DateTime: (_INTS, None),
    DataType.Bytes: (_BYTES, _b64),
    DataType.File: (_BYTES, _b64),
    DataType.StringArray: (_BYTES, _decode_string_array),
    **{code: (_BYTES, _array_decoder(fmt)) for code, fmt in _ARRAY_FORMATS.items()},
}
# Filled in below, once the container decoders exist.
_RAW_DECODERS: dict[str, Callable[[Any], Any]] = {}
_UNSUPPORTED_TYPES = frozenset({DataType.BooleanArray})


def _decode_value(dtype: int, which: str, raw: Any) -> Any:
    spec = _VALUE_DECODERS.get(dtype)
    if spec is None:  # Unknown, unsupported or future datatype: pass the wire value through
        return _RAW_DECODERS[which](raw)
    allowed, convert = spec
    if which not in allowed:
        raise SparkplugDecodeError(f"datatype {_type_name(dtype)} cannot be carried in {which}")
    return raw if convert is None else convert(raw)


def _metric_label(doc: Mapping[str, Any]) -> str:
    if "name" in doc:
        return repr(doc["name"])
    return f"alias {doc['alias']}" if "alias" in doc else "(unnamed)"


def _decode_metric(
    m: _pb.Payload.Metric, aliases: Mapping[int, tuple[str, int]] | None
) -> dict[str, Any]:
    # Hot path (DDATA): keep to a handful of C-level accessor calls per metric.
    doc: dict[str, Any] = {}
    dtype = m.datatype
    if m.HasField("name"):
        doc["name"] = _text(m.name)
    if m.HasField("alias"):
        alias = doc["alias"] = m.alias
        if aliases is not None:
            bound = aliases.get(alias)
            if bound is not None:
                if "name" not in doc:
                    doc["name"] = bound[0]
                if not dtype:
                    dtype = bound[1]
    if m.HasField("timestamp"):
        doc["timestamp"] = m.timestamp
    doc["datatype"] = _TYPE_NAMES.get(dtype) or _type_name(dtype)
    which = m.WhichOneof("value")
    if m.is_null:
        doc["value"] = None
        doc["is_null"] = True
    elif which is None:
        doc["value"] = None
    else:
        try:
            doc["value"] = _decode_value(dtype, which, getattr(m, which))
        except SparkplugDecodeError as exc:
            raise SparkplugDecodeError(f"metric {_metric_label(doc)}: {exc}") from None
        if dtype in _UNSUPPORTED_TYPES or which == "extension_value":
            doc["unsupported"] = True
    if m.is_historical:
        doc["is_historical"] = True
    if m.is_transient:
        doc["is_transient"] = True
    if m.HasField("properties"):
        doc["properties"] = _decode_property_set(m.properties)
    if m.HasField("metadata"):
        doc["metadata"] = _decode_metadata(m.metadata)
    return doc


# Field numbers of Payload.Metric, by descriptor: one ListFields() call tells which fields
# are present, where the general decoder asks HasField/WhichOneof about each of them.
_METRIC_FIELDS: dict[Any, int] = {fd: fd.number for fd in _pb.Payload.Metric.DESCRIPTOR.fields}
_NAME, _ALIAS, _TIMESTAMP, _DATATYPE = 1, 2, 3, 4
_FIRST_VALUE_FIELD = 10  # the value oneof: int_value (10) .. extension_value (19)
_VALUE_FIELD_NAMES: dict[int, str] = {
    fd.number: fd.name
    for fd in _pb.Payload.Metric.DESCRIPTOR.fields
    if fd.containing_oneof is not None
}
# Value fields whose decoded value is a plain scalar (the data fast path handles these).
_SCALAR_VALUE_FIELDS = frozenset(range(10, 17))


def _decode_metrics(
    metrics: Iterable[_pb.Payload.Metric], aliases: Mapping[int, tuple[str, int]] | None
) -> list[dict[str, Any]]:
    """Same documents as ``[_decode_metric(m, aliases) for m in metrics]``, faster.

    DATA messages are mostly metrics with an alias, an optional timestamp and one scalar
    value. Those are decoded from a single ``ListFields()``; anything else (flags,
    properties, metadata, containers, a value that does not decode) goes through
    :func:`_decode_metric`, which also produces the error message.
    """
    out = []
    append = out.append
    numbers = _METRIC_FIELDS
    for m in metrics:
        name = alias = timestamp = raw = None
        dtype = which = 0
        for fd, value in m.ListFields():
            number = numbers[fd]
            if number >= _FIRST_VALUE_FIELD:
                which, raw = number, value
            elif number == _ALIAS:
                alias = value
            elif number == _TIMESTAMP:
                timestamp = value
            elif number == _DATATYPE:
                dtype = value
            elif number == _NAME:
                name = value
            else:  # is_historical/is_transient/is_null, metadata, properties
                which = -1
                break
        if which < 0 or (which and which not in _SCALAR_VALUE_FIELDS):
            append(_decode_metric(m, aliases))
            continue
        doc: dict[str, Any] = {}
        if name is not None:
            doc["name"] = _text(name)
        if alias is not None:
            doc["alias"] = alias
            bound = aliases.get(alias) if aliases is not None else None
            if bound is not None:
                if name is None:
                    doc["name"] = bound[0]
                if not dtype:
                    dtype = bound[1]
        if timestamp is not None:
            doc["timestamp"] = timestamp
        doc["datatype"] = _TYPE_NAMES.get(dtype) or _type_name(dtype)
        if not which:
            doc["value"] = None
        else:
            spec = _VALUE_DECODERS.get(dtype)
            if spec is None or _VALUE_FIELD_NAMES[which] not in spec[0]:
                append(_decode_metric(m, aliases))  # unknown type or wrong field: its error
                continue
            convert = spec[1]
            try:
                doc["value"] = raw if convert is None else convert(raw)
            except SparkplugDecodeError:
                append(_decode_metric(m, aliases))  # raises with the metric's label
                continue
            if dtype in _UNSUPPORTED_TYPES:
                doc["unsupported"] = True
        append(doc)
    return out


# --------------------------------------------------------------------------- columns

# datatype -> value field -> (datatype name, converter or None), for the columnar data path:
# the scalar value fields whose decoded value is an int, float, bool or str.
_COLUMN_VALUE_FIELDS = range(10, 16)  # int_value .. string_value (bytes stay on documents)
_COLUMN_DECODERS: dict[int, dict[int, tuple[str, Callable[[Any], Any] | None]]] = {
    code: {
        number: (_TYPE_NAMES[code], convert)
        for number in _COLUMN_VALUE_FIELDS
        if _VALUE_FIELD_NAMES[number] in allowed
    }
    for code, (allowed, convert) in _VALUE_DECODERS.items()
    if code not in _UNSUPPORTED_TYPES
}
_NO_DECODERS: dict[int, tuple[str, Callable[[Any], Any] | None]] = {}


@dataclass(slots=True)
class MetricColumns:
    """The metrics of a DATA payload as columns, one entry per metric in payload order.

    Only for payloads whose every metric has a name and/or alias, an optional timestamp and
    one int, float, bool or string value (no flags, properties or metadata): the usual
    DDATA. ``None`` in ``names``/``aliases``/``timestamps`` means the metric has no such key;
    ``names`` holds birth names of alias-only metrics (None: unknown alias).
    """

    names: list[str | None]
    aliases: list[int | None]
    timestamps: list[int | None]
    datatypes: list[str]
    values: list[Any]
    # what documents() decodes: the payload's metrics and the alias table they were read with
    source: tuple[Any, Mapping[int, tuple[str, int]] | None] = field(default=((), None), repr=False)

    def __len__(self) -> int:
        return len(self.values)

    def as_mapping(self) -> dict[str, list[Any]]:
        """Document key -> column (None: key absent), as contract column checks take them."""
        return {
            "name": self.names,
            "alias": self.aliases,
            "timestamp": self.timestamps,
            "datatype": self.datatypes,
            "value": self.values,
        }

    def documents(self) -> list[dict[str, Any]]:
        """The metric documents of :func:`decode_payload` (decoded again, when needed)."""
        return _decode_metrics(*self.source)


def _metric_columns(
    metrics: Sequence[_pb.Payload.Metric], aliases: Mapping[int, tuple[str, int]] | None
) -> MetricColumns | None:
    """Columns of plain data metrics, or None when any metric is not plain or does not
    decode: the caller then takes the document path, which also words the error."""
    # The field loop below repeats _decode_metrics' on purpose: this is the gateway's hot
    # path (50 metrics per DDATA), where an extra Python call per metric is not free.
    columns = MetricColumns([], [], [], [], [], source=(metrics, aliases))
    names, alias_col, stamps = columns.names, columns.aliases, columns.timestamps
    types, values = columns.datatypes, columns.values
    numbers, decoders, bindings = _METRIC_FIELDS, _COLUMN_DECODERS, aliases or {}
    for m in metrics:
        name = alias = timestamp = raw = None
        dtype = which = 0
        for fd, value in m.ListFields():
            number = numbers[fd]
            if number >= _FIRST_VALUE_FIELD:
                which, raw = number, value
            elif number == _ALIAS:
                alias = value
            elif number == _TIMESTAMP:
                timestamp = value
            elif number == _DATATYPE:
                dtype = value
            elif number == _NAME:
                name = value
            else:  # flags, metadata, properties
                return None
        if alias is not None:
            bound = bindings.get(alias)
            if bound is not None:
                if name is None:
                    name = bound[0]
                if not dtype:
                    dtype = bound[1]
        spec = decoders.get(dtype, _NO_DECODERS).get(which)
        if spec is None or name.__class__ is bytes:  # not plain, or a name that is not UTF-8
            return None
        convert = spec[1]
        if convert is not None:
            try:
                raw = convert(raw)
            except SparkplugDecodeError:
                return None
        names.append(name)
        alias_col.append(alias)
        stamps.append(timestamp)
        types.append(spec[0])
        values.append(raw)
    return columns


def _decode_property_set(ps: _pb.Payload.PropertySet) -> dict[str, Any]:
    keys, values = ps.keys, ps.values
    if len(keys) != len(values):
        raise SparkplugDecodeError(f"PropertySet has {len(keys)} keys but {len(values)} values")
    pairs = zip(keys, values, strict=True)
    return {_text(key): _decode_property_value(value) for key, value in pairs}


def _decode_property_value(pv: _pb.Payload.PropertyValue) -> Any:
    which = pv.WhichOneof("value")
    if pv.is_null or which is None:
        return None
    return _decode_value(pv.type, which, getattr(pv, which))


def _decode_property_set_list(psl: _pb.Payload.PropertySetList) -> list[dict[str, Any]]:
    return [_decode_property_set(ps) for ps in psl.propertyset]


def _decode_metadata(md: _pb.Payload.MetaData) -> dict[str, Any]:
    return {
        fd.name: _text(value) if fd.type == fd.TYPE_STRING else value
        for fd, value in md.ListFields()
    }


def _decode_dataset(ds: _pb.Payload.DataSet) -> dict[str, Any]:
    columns = [_text(column) for column in ds.columns]
    types = list(ds.types)
    if len(types) != len(columns):
        raise SparkplugDecodeError(f"DataSet has {len(columns)} columns but {len(types)} types")
    rows = []
    for index, row in enumerate(ds.rows):
        if len(row.elements) != len(columns):
            raise SparkplugDecodeError(
                f"DataSet row {index} has {len(row.elements)} values for {len(columns)} columns"
            )
        cells = zip(types, row.elements, strict=True)
        rows.append([_decode_cell(dtype, cell) for dtype, cell in cells])
    return {"columns": columns, "types": [_type_name(t) for t in types], "rows": rows}


def _decode_cell(dtype: int, cell: _pb.Payload.DataSet.DataSetValue) -> Any:
    which = cell.WhichOneof("value")
    return None if which is None else _decode_value(dtype, which, getattr(cell, which))


def _decode_template(t: _pb.Payload.Template) -> dict[str, Any]:
    doc: dict[str, Any] = {"is_definition": t.is_definition}
    if t.HasField("version"):
        doc["version"] = _text(t.version)
    if t.HasField("template_ref"):
        doc["template_ref"] = _text(t.template_ref)
    doc["metrics"] = [_decode_metric(m, None) for m in t.metrics]
    if t.parameters:
        doc["parameters"] = [_decode_parameter(p) for p in t.parameters]
    return doc


def _decode_parameter(p: _pb.Payload.Template.Parameter) -> dict[str, Any]:
    which = p.WhichOneof("value")
    value = None if which is None else _decode_value(p.type, which, getattr(p, which))
    return {"name": _text(p.name), "type": _type_name(p.type), "value": value}


_RAW_DECODERS.update(
    {
        "int_value": int,
        "long_value": int,
        "float_value": float,
        "double_value": float,
        "boolean_value": bool,
        "string_value": _text,
        "bytes_value": _b64,
        "dataset_value": _decode_dataset,
        "template_value": _decode_template,
        "propertyset_value": _decode_property_set,
        "propertysets_value": _decode_property_set_list,
        "extension_value": lambda _raw: None,
    }
)
_VALUE_DECODERS.update(
    {
        DataType.DataSet: (frozenset({"dataset_value"}), _decode_dataset),
        DataType.Template: (frozenset({"template_value"}), _decode_template),
        DataType.PropertySet: (frozenset({"propertyset_value"}), _decode_property_set),
        DataType.PropertySetList: (frozenset({"propertysets_value"}), _decode_property_set_list),
    }
)

# What a hostile payload can raise while being turned into a document, besides our own.
_CONVERSION_ERRORS = (UnicodeDecodeError, struct.error, OverflowError, RecursionError)


def _parse(data: bytes | bytearray | memoryview) -> _pb.Payload:
    if not isinstance(data, bytes):
        if not isinstance(data, (bytearray, memoryview)):
            raise SparkplugDecodeError(f"payload must be bytes, not {type(data).__name__}")
        data = bytes(data)
    try:
        return _pb.Payload.FromString(data)
    except DecodeError as exc:
        raise SparkplugDecodeError(
            f"not a Sparkplug B payload ({len(data)} bytes): {exc}"
        ) from None


def _document_header(payload: _pb.Payload) -> dict[str, Any]:
    """The payload's fields besides its metrics, in document order."""
    doc: dict[str, Any] = {
        "timestamp": payload.timestamp if payload.HasField("timestamp") else None,
        "seq": payload.seq if payload.HasField("seq") else None,
    }
    if payload.HasField("uuid"):
        doc["uuid"] = _text(payload.uuid)
    if payload.HasField("body"):
        doc["body"] = _b64(payload.body)
    return doc


def _document(
    payload: _pb.Payload, aliases: Mapping[int, tuple[str, int]] | None
) -> dict[str, Any]:
    try:
        doc = _document_header(payload)
        doc["metrics"] = _decode_metrics(payload.metrics, aliases)
        return doc
    except _CONVERSION_ERRORS as exc:
        raise SparkplugDecodeError(f"malformed Sparkplug B payload: {exc}") from None


def decode_payload(data: bytes) -> dict[str, Any]:
    """Decode Sparkplug B payload bytes into a plain JSON-able document (no session state).

    Raises SparkplugDecodeError (a ValueError) for anything that is not a valid payload.
    """
    return _document(_parse(data), None)


def decode_for_contract(data: bytes) -> dict[str, Any]:
    """Contract-validation decoder for :data:`CONTENT_TYPE` (stateless)."""
    return decode_payload(data)


def register_contract_decoder(register: Callable[[str, Callable], Any] | None = None) -> None:
    """Register :func:`decode_for_contract` under :data:`CONTENT_TYPE`.

    ``register`` defaults to ``mfg_assets.uns.contract.register_decoder``; imported lazily so
    this module does not depend on (or import-cycle with) the contract module.
    """
    if register is None:
        from mfg_assets.uns.contract import register_decoder as register
    register(CONTENT_TYPE, decode_for_contract)


# --------------------------------------------------------------------------- encoding


@dataclass(slots=True)
class Metric:
    """A metric to encode. Dicts with the same keys are accepted too.

    ``datatype`` is a DataType name ("Double"), its number, or None to infer from the value
    (bool -> Boolean, int -> Int64, float -> Double, str -> String, bytes -> Bytes,
    datetime -> DateTime). A value of None encodes as ``is_null``.
    """

    name: str | None = None
    value: Any = None
    datatype: str | int | None = None
    alias: int | None = None
    timestamp: int | None = None
    is_null: bool = False
    is_historical: bool = False
    is_transient: bool = False
    properties: Mapping[str, Any] | None = None


MetricLike = Metric | Mapping[str, Any]
_METRIC_KEYS = frozenset(f.name for f in fields(Metric))


def _as_metric(metric: MetricLike) -> Metric:
    if isinstance(metric, Metric):
        return metric
    if not isinstance(metric, Mapping):
        raise ValueError(f"metric must be a Metric or a mapping, not {type(metric).__name__}")
    unknown = set(metric) - _METRIC_KEYS
    if unknown:
        raise ValueError(f"unknown metric keys {sorted(unknown)}; allowed: {sorted(_METRIC_KEYS)}")
    return Metric(**metric)


def datatype_code(datatype: str | int) -> int:
    """DataType number for a name ("Double") or number; ValueError if unknown."""
    if isinstance(datatype, str):
        code = _TYPE_CODES.get(datatype)
        if code is None:
            raise ValueError(f"unknown Sparkplug datatype {datatype!r}")
        return code
    if isinstance(datatype, int) and not isinstance(datatype, bool) and datatype in _TYPE_NAMES:
        return datatype
    raise ValueError(f"unknown Sparkplug datatype {datatype!r}")


def _infer_datatype(value: Any) -> int:
    # bool before int: bool is an int subclass.
    for kind, code in (
        (bool, DataType.Boolean),
        (int, DataType.Int64),
        (float, DataType.Double),
        (str, DataType.String),
        ((bytes, bytearray, memoryview), DataType.Bytes),
        (datetime, DataType.DateTime),
    ):
        if isinstance(value, kind):
            return code
    raise ValueError(f"cannot infer a Sparkplug datatype for {value!r}; give datatype")


def _require_int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected an int, got {value!r}")
    return value


def _uint(value: Any, bits: int, what: str) -> int:
    if not 0 <= _require_int(value) < 1 << bits:
        raise ValueError(f"{what} {value} out of range for an unsigned {bits}-bit integer")
    return value


def _signed_encoder(bits: int) -> Callable[[Any], int]:
    # Sign-extend to the wire width (uint32 for Int8..Int32), as the Java and C reference
    # implementations do; decoders that mask to N bits read it correctly as well.
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    wire_mask = (1 << max(bits, 32)) - 1

    def convert(value: Any) -> int:
        if not low <= _require_int(value) <= high:
            raise ValueError(f"{value} out of range for Int{bits}")
        return value & wire_mask

    return convert


def _unsigned_encoder(bits: int) -> Callable[[Any], int]:
    return lambda value: _uint(value, bits, "value")


def _real(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {value!r}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{value} is too large for a floating-point value") from None


def _float32(value: Any) -> float:
    number = _real(value)
    if math.isfinite(number) and abs(number) > 3.4028234663852886e38:
        raise ValueError(f"{value} out of range for Float")
    return number


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected a bool, got {value!r}")
    return value


def _string(value: Any) -> str:
    if isinstance(value, UUID):
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a str, got {value!r}")
    return value


def _datetime_ms(value: Any) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("DateTime values must be timezone-aware")
        return round(value.timestamp() * 1000)
    return _uint(value, 64, "DateTime milliseconds")


def _bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):  # the decoder's base64 form, so documents round-trip
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"Bytes given as str must be base64: {exc}") from None
    raise ValueError(f"expected bytes, got {value!r}")


def _array_encoder(fmt: str) -> Callable[[Any], bytes]:
    def convert(values: Any) -> bytes:
        try:
            return struct.pack(f"<{len(values)}{fmt}", *values)
        except (struct.error, TypeError) as exc:
            raise ValueError(f"cannot pack array as {fmt!r}: {exc}") from None

    return convert


def _string_array(values: Any) -> bytes:
    out = bytearray()
    for value in values:
        text = _string(value)
        if "\0" in text:
            raise ValueError("StringArray elements must not contain NUL")
        out += text.encode("utf-8") + b"\0"
    return bytes(out)


# datatype -> (oneof field, converter). DataSet and property sets are built separately.
_VALUE_ENCODERS: dict[int, tuple[str, Callable[[Any], Any]]] = {
    DataType.Int8: ("int_value", _signed_encoder(8)),
    DataType.Int16: ("int_value", _signed_encoder(16)),
    DataType.Int32: ("int_value", _signed_encoder(32)),
    DataType.Int64: ("long_value", _signed_encoder(64)),
    DataType.UInt8: ("int_value", _unsigned_encoder(8)),
    DataType.UInt16: ("int_value", _unsigned_encoder(16)),
    DataType.UInt32: ("int_value", _unsigned_encoder(32)),
    DataType.UInt64: ("long_value", _unsigned_encoder(64)),
    DataType.Float: ("float_value", _float32),
    DataType.Double: ("double_value", _real),
    DataType.Boolean: ("boolean_value", _boolean),
    DataType.String: ("string_value", _string),
    DataType.Text: ("string_value", _string),
    DataType.UUID: ("string_value", _string),
    DataType.DateTime: ("long_value", _datetime_ms),
    DataType.Bytes: ("bytes_value", _bytes),
    DataType.File: ("bytes_value", _bytes),
    DataType.StringArray: ("bytes_value", _string_array),
    **{code: ("bytes_value", _array_encoder(fmt)) for code, fmt in _ARRAY_FORMATS.items()},
}


def _set_value(out: Any, dtype: int, value: Any) -> None:
    """Set the value oneof of a Metric, PropertyValue, DataSetValue or Template.Parameter."""
    if dtype == DataType.DataSet and hasattr(out, "dataset_value"):
        _encode_dataset(out.dataset_value, value)
        return
    encoder = _VALUE_ENCODERS.get(dtype)
    if encoder is None or encoder[0] not in out.DESCRIPTOR.fields_by_name:
        where = out.DESCRIPTOR.name
        raise ValueError(f"encoding datatype {_type_name(dtype)} in a {where} is not supported")
    field_name, convert = encoder
    setattr(out, field_name, convert(value))


def _encode_dataset(out: _pb.Payload.DataSet, value: Any) -> None:
    if not isinstance(value, Mapping) or not {"columns", "types", "rows"} <= set(value):
        raise ValueError("a DataSet value must be a mapping with columns, types and rows")
    columns, types = list(value["columns"]), [datatype_code(t) for t in value["types"]]
    if len(columns) != len(types):
        raise ValueError(f"DataSet has {len(columns)} columns but {len(types)} types")
    out.num_of_columns = len(columns)
    out.columns.extend(_string(column) for column in columns)
    out.types.extend(types)
    for index, row in enumerate(value["rows"]):
        if len(row) != len(columns):
            raise ValueError(
                f"DataSet row {index} has {len(row)} values for {len(columns)} columns"
            )
        row_out = out.rows.add()
        for dtype, cell in zip(types, row, strict=True):
            element = row_out.elements.add()
            if cell is not None:  # an element with no value is a null cell
                _set_value(element, dtype, cell)


def _encode_property_set(out: _pb.Payload.PropertySet, properties: Mapping[str, Any]) -> None:
    for key, value in properties.items():
        out.keys.append(_string(key))
        try:
            _encode_property_value(out.values.add(), value)
        except ValueError as exc:
            raise ValueError(f"property {key!r}: {exc}") from None


def _encode_property_value(out: _pb.Payload.PropertyValue, value: Any) -> None:
    # Plain values get an inferred type; {"type": ..., "value": ...} pins it.
    if isinstance(value, Mapping) and set(value) == {"type", "value"}:
        dtype, value = datatype_code(value["type"]), value["value"]
    elif isinstance(value, Mapping):
        dtype = DataType.PropertySet
    elif isinstance(value, (list, tuple)) and all(isinstance(v, Mapping) for v in value):
        dtype = DataType.PropertySetList
    else:
        dtype = _infer_datatype(value)
    out.type = dtype
    if value is None:
        out.is_null = True
    elif dtype == DataType.PropertySet:
        _encode_property_set(out.propertyset_value, value)
    elif dtype == DataType.PropertySetList:
        out.propertysets_value.SetInParent()
        for item in value:
            _encode_property_set(out.propertysets_value.propertyset.add(), item)
    else:
        _set_value(out, dtype, value)


def _encode_metric(out: _pb.Payload.Metric, metric: Metric, include_datatype: bool) -> None:
    if metric.name is None and metric.alias is None:
        raise ValueError("a metric needs a name or an alias")
    if metric.name is not None:
        out.name = _string(metric.name)
    if metric.alias is not None:
        out.alias = _uint(metric.alias, 64, "alias")
    if metric.timestamp is not None:
        out.timestamp = _uint(metric.timestamp, 64, "timestamp")
    value = metric.value
    if metric.datatype is not None:
        dtype = datatype_code(metric.datatype)
    elif value is None:
        raise ValueError("a null metric needs an explicit datatype")
    else:
        dtype = _infer_datatype(value)
    if include_datatype:
        out.datatype = dtype
    if metric.is_null or value is None:
        out.is_null = True
    else:
        _set_value(out, dtype, value)
    if metric.is_historical:
        out.is_historical = True
    if metric.is_transient:
        out.is_transient = True
    if metric.properties:
        _encode_property_set(out.properties, metric.properties)


def encode_payload(
    timestamp_ms: int,
    seq: int | None,
    metrics: Iterable[MetricLike] = (),
    uuid: str | None = None,
    body: bytes | None = None,
    *,
    include_datatypes: bool = True,
) -> bytes:
    """Encode a Sparkplug B payload. ``seq`` is None for NDEATH/commands, else 0..255.

    Births must carry datatypes; Sparkplug 3.0 says DATA/CMD metrics should not, so pass
    ``include_datatypes=False`` there (the datatype still picks the value field).
    """
    payload = _pb.Payload()
    payload.timestamp = _uint(timestamp_ms, 64, "timestamp")
    if seq is not None:
        payload.seq = _uint(seq, 8, "seq")
    for item in metrics:
        metric = _as_metric(item)
        try:
            _encode_metric(payload.metrics.add(), metric, include_datatypes)
        except ValueError as exc:
            label = repr(metric.name) if metric.name is not None else f"alias {metric.alias}"
            raise ValueError(f"metric {label}: {exc}") from None
    if uuid is not None:
        payload.uuid = _string(uuid)
    if body is not None:
        payload.body = _bytes(body)
    return payload.SerializeToString()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def rebirth_command(
    group_id: str, edge_node_id: str, timestamp_ms: int | None = None
) -> tuple[str, bytes]:
    """NCMD topic and payload asking an edge node to republish its births."""
    topic = format_topic("NCMD", group_id, edge_node_id)
    ts = now_ms() if timestamp_ms is None else timestamp_ms
    metric = Metric(name=REBIRTH_METRIC, value=True, datatype="Boolean", timestamp=ts)
    return topic, encode_payload(ts, None, [metric])  # commands carry no seq


# --------------------------------------------------------------------------- session


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


__all__ = [
    "BDSEQ_METRIC",
    "CONTENT_TYPE",
    "DEVICE_MESSAGE_TYPES",
    "MESSAGE_TYPES",
    "NAMESPACE",
    "NODE_MESSAGE_TYPES",
    "REBIRTH_METRIC",
    "STATE",
    "DataType",
    "Metric",
    "MetricColumns",
    "MetricLike",
    "SessionEvent",
    "SparkplugDecodeError",
    "SparkplugSession",
    "SparkplugTopic",
    "check_id",
    "datatype_code",
    "decode_for_contract",
    "decode_payload",
    "encode_payload",
    "format_topic",
    "now_ms",
    "parse_topic",
    "rebirth_command",
    "register_contract_decoder",
]
