"""Sparkplug B payload bytes -> plain JSON-able documents (no session state).

Decoded payloads look like::

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

import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from google.protobuf.message import DecodeError

from mfg_assets.uns import sparkplug_b_pb2 as _pb
from mfg_assets.uns.sparkplug.datatypes import (
    _ARRAY_FORMATS,
    _TYPE_NAMES,
    DataType,
    SparkplugDecodeError,
    _b64,
    _text,
    _type_name,
)

CONTENT_TYPE = "application/vnd.sparkplug-b+protobuf"


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
