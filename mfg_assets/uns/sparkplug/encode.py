"""Python values -> Sparkplug B payload bytes, and the rebirth command a host sends."""

from __future__ import annotations

import base64
import binascii
import math
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from uuid import UUID

from mfg_assets.uns import sparkplug_b_pb2 as _pb
from mfg_assets.uns.sparkplug.datatypes import (
    _ARRAY_FORMATS,
    _TYPE_CODES,
    _TYPE_NAMES,
    DataType,
    _type_name,
)
from mfg_assets.uns.sparkplug.topics import format_topic

REBIRTH_METRIC = "Node Control/Rebirth"


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
