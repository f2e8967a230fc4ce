"""The column fast path: the metrics of a plain DATA payload as columns, no per-metric dicts.

The gateway's hot path (50 metrics per DDATA): :class:`MetricColumns` feed the contract's
column checks and the bronze rows directly; anything not plain goes back to the documents of
:mod:`mfg_assets.uns.sparkplug.decode`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mfg_assets.uns import sparkplug_b_pb2 as _pb
from mfg_assets.uns.sparkplug.datatypes import _TYPE_NAMES, SparkplugDecodeError
from mfg_assets.uns.sparkplug.decode import (
    _ALIAS,
    _DATATYPE,
    _FIRST_VALUE_FIELD,
    _METRIC_FIELDS,
    _NAME,
    _TIMESTAMP,
    _UNSUPPORTED_TYPES,
    _VALUE_DECODERS,
    _VALUE_FIELD_NAMES,
    _decode_metrics,
)

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
