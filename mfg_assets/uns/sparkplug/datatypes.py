"""Sparkplug B datatypes: the protobuf DataType enum, its names, and what the decoder and the
encoder share (text/base64 helpers, packed-array formats, the decode error)."""

from __future__ import annotations

import base64

from mfg_assets.uns import sparkplug_b_pb2 as _pb

DataType = _pb.DataType
_TYPE_NAMES: dict[int, str] = {v.number: v.name for v in _pb.DataType.DESCRIPTOR.values}
_TYPE_CODES: dict[str, int] = {name: code for code, name in _TYPE_NAMES.items()}


class SparkplugDecodeError(ValueError):
    """Bytes that are not a well-formed Sparkplug B payload."""


def _text(value: str | bytes) -> str:
    # upb hands back bytes for proto2 string fields holding invalid UTF-8.
    if value.__class__ is bytes:
        raise SparkplugDecodeError("string field is not valid UTF-8")
    return value  # type: ignore[return-value]


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def _type_name(code: int) -> str:
    return _TYPE_NAMES.get(code) or f"Unknown({code})"


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
