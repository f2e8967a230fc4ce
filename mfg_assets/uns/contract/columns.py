"""Column checks: an array of objects validated per key over all items at once.

Proves a message valid without building one dict per item (see
:meth:`~mfg_assets.uns.contract.validate.Contract.accepts_columns`); anything it cannot prove
is left to the compiled schema.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import fastjsonschema

from mfg_assets.uns.contract.model import Message, _Validator

# Keywords that constrain nothing (fastjsonschema ignores them).
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment"})
# What the document around the array, the array itself, its items and their values may use
# for a column proof; any other keyword (allOf, $ref, patternProperties, pattern, format,
# const, uniqueItems, ...) leaves the message to fastjsonschema alone.
_SHELL_KEYWORDS = _ANNOTATIONS | {
    "type",
    "required",
    "properties",
    "additionalProperties",
    "minProperties",
    "maxProperties",
}
_ARRAY_KEYWORDS = _ANNOTATIONS | {"type", "items", "minItems", "maxItems"}
_ITEM_KEYWORDS = _ANNOTATIONS | {"type", "properties", "required", "additionalProperties"}
_VALUE_KEYWORDS = _ANNOTATIONS | {
    "type",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
}
# The Python scalars a column check judges, and the JSON types each one is an instance of.
# A float is never proven an "integer" (fastjsonschema accepts 1.0; we only fall back).
_PY_JSON_TYPES: dict[type, frozenset[str]] = {
    str: frozenset({"string"}),
    bool: frozenset({"boolean"}),
    int: frozenset({"integer", "number"}),
    float: frozenset({"number"}),
}
_SCALARS = frozenset(_PY_JSON_TYPES)
_NUMBERS = frozenset({int, float})
_ALWAYS_STR = frozenset({str})


def _is_number(value: Any) -> bool:
    return value.__class__ is int or value.__class__ is float


_NONE = type(None)


@dataclass(frozen=True, slots=True)
class _ValueCheck:
    """One item property's schema, judged over the column of its present values."""

    kinds: frozenset[type] = _SCALARS
    enum: frozenset[str] | None = None
    low: tuple[float, bool] | None = None  # (bound, exclusive)
    high: tuple[float, bool] | None = None
    min_length: int | None = None
    max_length: int | None = None

    def __call__(self, values: list[Any], kinds: set[type]) -> bool:
        """``kinds``: the set of the values' types (the caller has it already)."""
        if not kinds <= self.kinds:
            return False
        if self.enum is not None and not (kinds <= _ALWAYS_STR and self.enum.issuperset(values)):
            return False
        if self.low is not None or self.high is not None:
            numbers = values if kinds <= _NUMBERS else [v for v in values if _is_number(v)]
            if numbers and not self._in_range(numbers):
                return False
        if self.min_length is not None or self.max_length is not None:
            texts = values if kinds <= _ALWAYS_STR else [v for v in values if v.__class__ is str]
            if texts and not self._length_ok(texts):
                return False
        return True

    def _in_range(self, numbers: list[Any]) -> bool:
        # A NaN that min()/max() return fails every comparison: not proven, fall back.
        if self.low is not None:
            bound, exclusive = self.low
            lowest = min(numbers)
            if not (lowest > bound if exclusive else lowest >= bound):
                return False
        if self.high is not None:
            bound, exclusive = self.high
            highest = max(numbers)
            if not (highest < bound if exclusive else highest <= bound):
                return False
        return True

    def _length_ok(self, texts: list[str]) -> bool:
        lengths = list(map(len, texts))
        if self.min_length is not None and min(lengths) < self.min_length:
            return False
        return self.max_length is None or max(lengths) <= self.max_length


@dataclass(frozen=True, slots=True)
class _ItemsCheck:
    """An array's ``items`` object schema, judged per key over columns."""

    properties: Mapping[str, _ValueCheck]
    required: tuple[str, ...] = ()
    closed: bool = False  # additionalProperties: false
    never: bool = False  # items: false

    def __call__(self, columns: Mapping[str, list[Any]], count: int) -> bool:
        if count == 0:
            return True
        if self.never:
            return False
        if any(key not in columns for key in self.required):
            return False
        for key, column in columns.items():
            check = self.properties.get(key)
            required = key in self.required
            if check is None and not self.closed and not required:
                continue  # any value, or none, is fine: nothing to look at
            kinds = set(map(type, column))  # one pass: absent items (None) and value types
            if _NONE in kinds:
                if required:
                    return False
                kinds.discard(_NONE)
                if not kinds:
                    continue  # no item has the key
                column = [v for v in column if v is not None]
            if check is None:
                if self.closed:
                    return False  # an item has a key the schema does not allow
                continue
            if not check(column, kinds):
                return False
        return True


@dataclass(frozen=True, slots=True)
class _ColumnarCheck:
    """The document without the array's items (fastjsonschema) plus the items (columns)."""

    shell: _Validator | None
    items: _ItemsCheck

    def __call__(
        self, header: Mapping[str, Any], array_key: str, columns: Mapping[str, list[Any]]
    ) -> bool:
        count = len(next(iter(columns.values())))
        if any(len(column) != count for column in columns.values()):
            return False
        if self.shell is not None:
            try:  # the shell schema has no ``items``: placeholders stand in for them
                self.shell({**header, array_key: [None] * count})
            except fastjsonschema.JsonSchemaValueException:
                return False
        return self.items(columns, count)


_UNCHECKED_ITEMS = _ItemsCheck({})


def _columnar_check(message: Message, array_key: str) -> _ColumnarCheck | None:
    """The column check of ``message``'s payload schema for items under ``array_key``, or
    None when the schema uses anything the column checks do not reproduce."""
    if message._check_payload is None:  # nothing to check: check() passes any document
        return _ColumnarCheck(None, _UNCHECKED_ITEMS)
    split = _split_items(message.payload_schema, array_key)
    if split is None:
        return None
    shell, items_schema = split
    items = _items_check(items_schema)
    if items is None:
        return None
    return _ColumnarCheck(fastjsonschema.compile(shell, use_default=False), items)


def _split_items(schema: Any, array_key: str) -> tuple[dict[str, Any], Any] | None:
    """(the schema without ``properties.<array_key>.items``, that items schema)."""
    if not isinstance(schema, Mapping) or not set(schema) <= _SHELL_KEYWORDS:
        return None
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return None
    array = properties.get(array_key)
    if not isinstance(array, Mapping) or not set(array) <= _ARRAY_KEYWORDS:
        return None
    items = array.get("items", True)
    shell_array = {k: v for k, v in array.items() if k != "items"}
    return {**schema, "properties": {**properties, array_key: shell_array}}, items


def _items_check(schema: Any) -> _ItemsCheck | None:
    if schema is True or schema is False:
        return _ItemsCheck({}, never=not schema)
    if not isinstance(schema, Mapping) or not set(schema) <= _ITEM_KEYWORDS:
        return None
    if "type" in schema and "object" not in _type_names(schema["type"]):
        return None
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    properties = schema.get("properties", {})
    if (
        not isinstance(required, list)
        or not all(isinstance(key, str) for key in required)
        or (extra is not True and extra is not False)  # a schema here: not supported
        or not isinstance(properties, Mapping)
    ):
        return None
    checks = {key: _value_check(sub) for key, sub in properties.items()}
    if any(check is None for check in checks.values()):
        return None
    return _ItemsCheck(checks, tuple(required), closed=extra is False)  # type: ignore[arg-type]


def _type_names(value: Any) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return ()
    return tuple(names)


def _value_check(schema: Any) -> _ValueCheck | None:
    if schema is True or schema is False:
        return _ValueCheck(_SCALARS if schema else frozenset())
    if not isinstance(schema, Mapping) or not set(schema) <= _VALUE_KEYWORDS:
        return None
    kinds = _SCALARS
    if "type" in schema:
        names = set(_type_names(schema["type"]))
        if not names:
            return None
        kinds = frozenset(py for py, json in _PY_JSON_TYPES.items() if json & names)
    enum = schema.get("enum")
    if enum is not None and (
        not isinstance(enum, list) or not all(isinstance(v, str) for v in enum)
    ):
        return None
    bounds = [schema.get(k) for k in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")]
    lengths = [schema.get(k) for k in ("minLength", "maxLength")]
    if not all(b is None or _is_number(b) for b in bounds) or not all(
        n is None or n.__class__ is int for n in lengths
    ):
        return None  # e.g. draft-04 boolean exclusiveMinimum
    return _ValueCheck(
        kinds,
        frozenset(enum) if enum is not None else None,
        _tightest(bounds[0], bounds[1], max),
        _tightest(bounds[2], bounds[3], min),
        lengths[0],
        lengths[1],
    )


def _tightest(
    inclusive: float | None, exclusive: float | None, pick: Callable[..., float]
) -> tuple[float, bool] | None:
    """One (bound, exclusive) that implies both bounds a schema gives on a side."""
    if inclusive is None and exclusive is None:
        return None
    if exclusive is None:
        return inclusive, False  # type: ignore[return-value]
    if inclusive is None:
        return exclusive, True
    tight = pick(inclusive, exclusive)
    return tight, tight == exclusive
