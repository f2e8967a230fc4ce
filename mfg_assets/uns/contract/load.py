"""Compile an AsyncAPI 2.6 / 3.x document with MQTT channels into a fast message validator.

The contract answers, for every message seen on the broker: which channel does this topic
belong to, with which parameters, and does the payload (and the MQTT v5 user properties)
match one of the messages declared for that channel?

    contract = load_contract("uns/asyncapi/main/asyncapi.yaml")
    channel, message_name, errors = contract.validate("plant/hh/line/L1/telemetry", payload)

All the expensive work happens once, in ``load_contract``: ``$ref`` resolution (jsonref),
trait merging, schema compilation (fastjsonschema, draft-07) and topic-pattern compilation.
``validate``/``check`` then cost one LRU lookup, one decode and one compiled-function call.

Every error string starts with a stable code followed by ``": "`` so callers can group them:

* ``unknown_topic``  no channel address matches the topic (or its parameters are not allowed)
* ``too_large``      the payload exceeds ``max_payload_bytes``
* ``bad_payload``    the payload cannot be decoded (invalid JSON, decoder error)
* ``bad_header``     the MQTT v5 user properties do not match the message's ``headers`` schema
* ``schema``         the decoded payload does not match the message's ``payload`` schema
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit
from urllib.request import url2pathname

import fastjsonschema
import jsonref
import orjson
import yaml

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "Channel",
    "CheckResult",
    "Contract",
    "ContractError",
    "Decoder",
    "Message",
    "is_json_content_type",
    "load_contract",
    "normalize_content_type",
    "register_decoder",
    "unregister_decoder",
]

DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
DEFAULT_CACHE_SIZE = 4096
DEFAULT_CONTENT_TYPE = "application/json"

Decoder = Callable[[bytes], Any]
Payload = bytes | bytearray | memoryview | str
Headers = Mapping[str, Any] | Iterable[tuple[str, Any]]
_Validator = Callable[[Any], Any]


class ContractError(ValueError):
    """The document cannot be turned into a contract (bad structure, broken $ref, bad schema)."""


# --------------------------------------------------------------------------------------------
# Content types and decoders
# --------------------------------------------------------------------------------------------

# Process-wide registry, so a codec module can register itself on import (e.g. Sparkplug B for
# "application/vnd.sparkplug-b+protobuf") and every contract, loaded before or after, uses it.
_DECODERS: dict[str, Decoder] = {}

# Marks "no decoder for this content type": the payload is accepted without a schema check.
_NOT_DECODED = object()


def normalize_content_type(content_type: str) -> str:
    """``"Application/JSON; charset=utf-8"`` -> ``"application/json"``."""
    return content_type.split(";", 1)[0].strip().lower()


def is_json_content_type(content_type: str) -> bool:
    return _is_json(normalize_content_type(content_type))


def _is_json(ct: str) -> bool:  # for already-normalized content types (the hot path)
    return ct in ("application/json", "text/json") or ct.endswith("+json")


def register_decoder(content_type: str, decoder: Decoder) -> None:
    """Decode payloads of ``content_type`` with ``decoder(bytes) -> document`` before the schema
    check. Raising any exception makes the payload a ``bad_payload``. Overrides the built-in
    JSON decoding when registered for a JSON content type."""
    _DECODERS[normalize_content_type(content_type)] = decoder


def unregister_decoder(content_type: str) -> None:
    _DECODERS.pop(normalize_content_type(content_type), None)


def _json_error(data: bytes, exc: orjson.JSONDecodeError) -> str:
    # orjson reports a character offset; callers look at raw bytes, so convert.
    byte_pos = len(data.decode("utf-8", "replace")[: exc.pos].encode("utf-8", "replace"))
    return f"bad_payload: invalid JSON at byte {byte_pos}: {exc.msg}"


# --------------------------------------------------------------------------------------------
# Public descriptors and results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """One message a channel accepts. Schemas are plain, self-contained JSON Schemas."""

    name: str
    content_type: str
    payload_schema: Any = field(default=None, repr=False)  # None: payload not schema-checked
    headers_schema: Any = field(default=None, repr=False)  # None: headers not checked
    schema_format: str | None = None
    checked: bool = True  # False when the schemaFormat is unsupported (avro, raml, ...)
    _check_payload: _Validator | None = field(default=None, repr=False, compare=False)
    _check_headers: _Validator | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Channel:
    id: str
    address: str
    messages: tuple[Message, ...]
    parameters: Mapping[str, Any]  # parameter name -> plain JSON Schema ({} = unconstrained)


class CheckResult(NamedTuple):
    channel: Channel | None
    message: str | None
    errors: list[str]
    document: Any  # decoded payload, None when not decoded
    params: dict[str, str]
    content_type: str | None

    @property
    def ok(self) -> bool:
        return not self.errors


# --------------------------------------------------------------------------------------------
# Topic routing
# --------------------------------------------------------------------------------------------

_PARAM_RE = re.compile(r"\{([^{}/]+)\}")


@dataclass(slots=True)
class _Route:
    """Everything that can arrive on one address (several channels may share an address)."""

    address: str
    pattern: re.Pattern[str] | None  # None for a literal address
    param_names: tuple[str, ...]
    param_checks: dict[str, _Validator]
    channels: list[Channel] = field(default_factory=list)
    entries: list[tuple[Channel, Message]] = field(default_factory=list)  # (owner, message)

    def bind(self, values: Sequence[str]) -> tuple[dict[str, str], str | None]:
        """Map regex groups to parameter names and check them; (params, reason-if-rejected)."""
        params: dict[str, str] = {}
        for name, value in zip(self.param_names, values, strict=True):
            if params.setdefault(name, value) != value:
                return params, f"parameter {name} appears twice with different values"
            check = self.param_checks.get(name)
            if check is not None:
                problem = _run_check(check, value, coerce=_coerce_scalar)
                if problem is not None:
                    return params, (
                        f"channel {self.address!r}: parameter {name}={value!r} "
                        f"{_strip_subject(problem)}"
                    )
        return params, None


def _address_pattern(address: str) -> tuple[re.Pattern[str] | None, tuple[str, ...]]:
    parts = _PARAM_RE.split(address)  # literal, name, literal, name, ..., literal
    names = tuple(parts[1::2])
    if not names:
        return None, ()
    # A parameter is exactly one non-empty level of the topic: no "/" inside.
    regex = "".join(re.escape(p) if i % 2 == 0 else "([^/]+)" for i, p in enumerate(parts))
    return re.compile(regex), names


def _specificity(address: str) -> int:
    """More literal text first, so "a/status" beats "a/{x}" and "a/{x}/b" beats "a/{x}/{y}"."""
    return len(_PARAM_RE.sub("", address))


# --------------------------------------------------------------------------------------------
# The contract
# --------------------------------------------------------------------------------------------


class Contract:
    """A compiled AsyncAPI contract. Build it with :func:`load_contract`."""

    def __init__(
        self,
        *,
        title: str,
        version: str,
        asyncapi: str,
        default_content_type: str,
        channels: list[Channel],
        warnings: list[str],
        routes: list[_Route],
        max_payload_bytes: int | None,
        cache_size: int,
        decoders: Mapping[str, Decoder] | None,
    ) -> None:
        self.title = title
        self.version = version
        self.asyncapi = asyncapi
        self.default_content_type = default_content_type
        self.channels = channels
        self.warnings = warnings
        self.max_payload_bytes = max_payload_bytes
        self._decoders = {normalize_content_type(k): v for k, v in (decoders or {}).items()}
        self._literal = {r.address: r for r in routes if r.pattern is None}
        # Parameterized routes bucketed by topic depth: a parameter never spans a "/".
        self._by_depth: dict[int, list[_Route]] = {}
        for route in sorted(routes, key=lambda r: -_specificity(r.address)):
            if route.pattern is not None:
                self._by_depth.setdefault(route.address.count("/"), []).append(route)
        # MQTT topics repeat a lot: remember recent topic -> route decisions.
        self._lookup = functools.lru_cache(maxsize=cache_size)(self._match_uncached)
        # (id(message), array key) -> its column check, None where it cannot be proven
        self._column_checks: dict[tuple[int, str], _ColumnarCheck | None] = {}

    @property
    def name(self) -> str:
        return f"{self.title} v{self.version}"

    def __repr__(self) -> str:
        return f"<Contract {self.name!r}: {len(self.channels)} channels>"

    # -- topic matching ------------------------------------------------------------------

    def _match_uncached(self, topic: str) -> tuple[_Route, dict[str, str]] | str:
        """(route, params), or the reason why no route took the topic ("" if none was close)."""
        route = self._literal.get(topic)
        if route is not None:
            return route, {}
        reason = ""
        for route in self._by_depth.get(topic.count("/"), ()):
            found = route.pattern.fullmatch(topic)  # type: ignore[union-attr]
            if found is None:
                continue
            params, problem = route.bind(found.groups())
            if problem is None:
                return route, params
            reason = reason or problem
        return reason

    def match(self, topic: str) -> tuple[Channel, dict[str, str]] | None:
        """The channel a topic belongs to and its parameter values, or None."""
        found = self._lookup(topic)
        if isinstance(found, str):
            return None
        route, params = found
        return route.channels[0], dict(params)

    def cache_clear(self) -> None:
        self._lookup.cache_clear()

    # -- validation ----------------------------------------------------------------------

    def validate(
        self, topic: str, payload: Payload, headers: Headers | None = None
    ) -> tuple[Channel | None, str | None, list[str]]:
        """``(channel, message_name, errors)``; see :meth:`check`."""
        result = self.check(topic, payload, headers)
        return result.channel, result.message, result.errors

    def check(
        self,
        topic: str,
        payload: Payload,
        headers: Headers | None = None,
        *,
        decoded: Any = _NOT_DECODED,
    ) -> CheckResult:
        """Validate one MQTT message.

        ``headers`` are the MQTT v5 user properties; they are checked only when given and the
        message declares a ``headers`` schema. String values that fail are retried as JSON
        scalars ("42" -> 42), because user properties are always strings on the wire.

        When the channel declares several messages, the payload is valid if any of them
        matches, and ``message`` is the name of the first one that does. If none matches,
        ``errors`` holds the errors of *every* candidate (one entry per candidate, identical
        decode errors reported once) and ``message`` is the candidate's name only when there
        was exactly one candidate, else None.

        ``decoded`` passes a document the caller already decoded (a stateful Sparkplug
        session resolves aliases while decoding): it is validated instead of decoding the
        payload again.
        """
        found = self._lookup(topic)
        if isinstance(found, str):
            detail = f" ({found})" if found else ""
            return CheckResult(None, None, [self._unknown_topic(topic) + detail], None, {}, None)
        route, params = found
        params = dict(params)  # the cached dict must not leak to callers
        channel = route.channels[0]
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        limit = self.max_payload_bytes
        if limit is not None and len(data) > limit:
            error = f"too_large: payload of {len(data)} bytes exceeds the {limit}-byte limit"
            return CheckResult(channel, None, [error], None, params, None)
        if not route.entries:  # a channel without messages says nothing about the payload
            return CheckResult(channel, None, [], None, params, None)
        return self._check_messages(route, data, _header_dict(headers), params, decoded)

    def _check_messages(
        self,
        route: _Route,
        data: Any,
        headers: Mapping[str, Any] | None,
        params: dict[str, str],
        predecoded: Any = _NOT_DECODED,
    ) -> CheckResult:
        decoded: dict[str, tuple[Any, str | None]] = {}  # decode once per content type
        errors: list[str] = []
        first: tuple[Any, str] | None = None  # what to report when no message matches
        for owner, message in route.entries:
            ct = message.content_type
            if ct not in decoded:
                use_given = predecoded is not _NOT_DECODED
                decoded[ct] = (predecoded, None) if use_given else self._decode(ct, data)
            document, decode_error = decoded[ct]
            problems = (
                [decode_error] if decode_error else _message_errors(message, document, headers)
            )
            if not problems:
                return CheckResult(owner, message.name, [], _public(document), params, ct)
            errors.extend(problems)
            first = first or (document, ct)
        document, ct = first  # type: ignore[misc]
        name = route.entries[0][1].name if len(route.entries) == 1 else None
        errors = list(dict.fromkeys(errors))  # one decode error per content type
        return CheckResult(route.channels[0], name, errors, _public(document), params, ct)

    def accepts_columns(
        self,
        topic: str,
        payload_size: int,
        header: Mapping[str, Any],
        array_key: str,
        columns: Mapping[str, list[Any]],
    ) -> bool:
        """True when ``check(topic, payload, decoded=document)`` (no headers) is proven to
        pass, without building ``document = {**header, array_key: items}``: the items come
        as columns (item key -> one value per item, None where an item lacks the key; every
        key any item has is a column; no item value is JSON null).

        False means "not proven": call :meth:`check` with the document, which decides and
        words the errors. Proof needs the channel's first message to constrain the items
        only through ``properties.<array_key>.items``, with keywords the column checks
        support (see :func:`_columnar_check`); the rest of the document still goes through
        the compiled schema. Why: per-item dicts and per-item schema code are most of the
        cost of a large Sparkplug DATA message.
        """
        found = self._lookup(topic)
        if isinstance(found, str) or not found[0].entries or not columns:
            return False
        if self.max_payload_bytes is not None and payload_size > self.max_payload_bytes:
            return False
        message = found[0].entries[0][1]  # check() reports the first message that passes
        key = (id(message), array_key)
        if key not in self._column_checks:
            self._column_checks[key] = _columnar_check(message, array_key)
        check = self._column_checks[key]
        return check is not None and check(header, array_key, columns)

    def _unknown_topic(self, topic: str) -> str:
        return f"unknown_topic: no channel in contract {self.name!r} matches topic {topic!r}"

    def _decode(self, content_type: str, data: Any) -> tuple[Any, str | None]:
        decoder = self._decoders.get(content_type) or _DECODERS.get(content_type)
        if decoder is not None:
            try:
                return decoder(bytes(data)), None
            except Exception as exc:  # any decoder failure is the payload's fault
                return None, f"bad_payload: {_describe_exception(exc)}"
        if _is_json(content_type):
            try:
                return orjson.loads(data), None
            except orjson.JSONDecodeError as exc:
                return None, _json_error(bytes(data), exc)
        return _NOT_DECODED, None


def _message_errors(
    message: Message, document: Any, headers: Mapping[str, Any] | None
) -> list[str]:
    errors = []
    if headers is not None and message._check_headers is not None:
        problem = _run_check(message._check_headers, headers, coerce=_coerce_headers)
        if problem is not None:
            errors.append(f"bad_header: {message.name}: headers{problem.removeprefix('data')}")
    if document is not _NOT_DECODED and message._check_payload is not None:
        problem = _run_check(message._check_payload, document)
        if problem is not None:
            errors.append(f"schema: {message.name}: {problem}")
    return errors


def _public(document: Any) -> Any:
    return None if document is _NOT_DECODED else document


def _run_check(
    check: _Validator, value: Any, coerce: Callable[[Any], Any] | None = None
) -> str | None:
    """None if valid, else fastjsonschema's readable message ("data.x must be number")."""
    try:
        check(value)
        return None
    except fastjsonschema.JsonSchemaValueException as exc:
        if coerce is not None:
            coerced = coerce(value)
            if coerced is not value:
                try:
                    check(coerced)
                    return None
                except fastjsonschema.JsonSchemaValueException as coerced_exc:
                    return coerced_exc.message  # says more than "must be integer"
        return exc.message


def _strip_subject(message: str) -> str:
    return message.removeprefix("data").lstrip()


def _coerce_scalar(value: Any) -> Any:
    """Read a string as a JSON scalar ("42" -> 42, "true" -> True), else return it as is."""
    if not isinstance(value, str):
        return value
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value
    return parsed if isinstance(parsed, int | float | bool) else value


def _coerce_headers(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    coerced = {k: _coerce_scalar(v) for k, v in headers.items()}
    return headers if coerced == headers else coerced


def _header_dict(headers: Headers | None) -> Mapping[str, Any] | None:
    if headers is None or isinstance(headers, Mapping):
        return headers
    return dict(headers)  # MQTT v5 user properties as (key, value) pairs; last one wins


def _describe_exception(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Column checks: an array of objects validated per key over all items at once
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Reading documents
# --------------------------------------------------------------------------------------------


class _YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML 1.2-ish scalars, as AsyncAPI intends: ``on``/``off``/``yes``/``no`` stay strings
    (YAML 1.1 would turn ``enum: [on, off]`` into booleans) and timestamps stay strings, so
    documents remain plain JSON data."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [
        (t, rx)
        for t, rx in resolvers
        if t not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _parse(text: str | bytes, name: str) -> Any:
    try:
        if name.lower().endswith(".json"):
            return orjson.loads(text)
        return yaml.load(text, Loader=_YamlLoader)  # a SafeLoader subclass
    except (yaml.YAMLError, orjson.JSONDecodeError) as exc:
        raise ContractError(f"cannot parse {name}: {exc}") from exc


class _FileLoader:
    """jsonref loader for ``file:`` URIs (YAML or JSON), each file read once per load."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def __call__(self, uri: str) -> Any:
        parts = urlsplit(uri)
        if parts.scheme != "file":
            raise ContractError(f"cannot load {uri!r}: only local files can be referenced")
        if uri not in self._cache:
            path = Path(url2pathname(parts.path))
            try:
                self._cache[uri] = _parse(path.read_bytes(), path.name)
            except OSError as exc:
                raise ContractError(f"cannot read {path}: {exc}") from exc
        return self._cache[uri]


def _read_source(
    source: str | os.PathLike[str] | Mapping[str, Any], base_uri: str | None
) -> tuple[Any, str]:
    if isinstance(source, Mapping):
        return source, base_uri or Path.cwd().as_uri() + "/"
    path = Path(source).resolve()
    try:
        raw = _parse(path.read_bytes(), path.name)
    except OSError as exc:
        raise ContractError(f"cannot read {path}: {exc}") from exc
    return raw, base_uri or path.as_uri()


# --------------------------------------------------------------------------------------------
# Schemas: jsonref proxy graph -> plain, self-contained JSON Schema -> compiled function
# --------------------------------------------------------------------------------------------

_ONE_SCHEMA = {
    "additionalItems",
    "additionalProperties",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
    "items",
}  # items may also be a list of schemas
_SCHEMA_LISTS = {"allOf", "anyOf", "oneOf"}
_SCHEMA_MAPS = {"properties", "patternProperties", "dependencies"}
# Identifiers would move fastjsonschema's $ref resolution scope; definitions are already
# inlined by jsonref; discriminator/externalDocs are AsyncAPI-only annotations.
_DROPPED = {"$id", "id", "$schema", "definitions", "$defs", "discriminator", "externalDocs"}

_JSON_SCHEMA_FORMAT = re.compile(
    r"^application/(?:vnd\.aai\.asyncapi|schema)(?:\+json|\+yaml)?(?:;.*)?$"
)


def _deref(node: Any) -> Any:
    while isinstance(node, jsonref.JsonRef):
        node = node.__subject__
    return node


class _SchemaFlattener:
    """jsonref inlines each ``$ref`` lazily, so a recursive schema is a cyclic object graph.
    Cycles are cut by storing the repeated node under ``definitions`` and pointing at it."""

    def __init__(self) -> None:
        self._definitions: dict[str, Any] = {}
        self._names: dict[int, str] = {}
        self._open: set[int] = set()
        self._memo: dict[int, Any] = {}

    def flatten(self, schema: Any) -> Any:
        body = self._schema(schema)
        if not self._definitions:
            return body
        return {"allOf": [body], "definitions": self._definitions}

    def _schema(self, node: Any) -> Any:
        node = _deref(node)
        if not isinstance(node, Mapping):
            return _plain(node)  # boolean schema
        key = id(node)
        if key in self._memo:
            return self._memo[key]
        if key in self._open:  # back-edge: refer to where the node will be stored
            name = self._names.setdefault(key, f"cycle{len(self._names)}")
            return {"$ref": f"#/definitions/{name}"}
        self._open.add(key)
        try:
            out = {
                k: self._keyword(k, v)
                for k, v in node.items()
                if k not in _DROPPED and not k.startswith("x-")
            }
        finally:
            self._open.discard(key)
        if key in self._names:
            self._definitions[self._names[key]] = out
            out = {"$ref": f"#/definitions/{self._names[key]}"}
        self._memo[key] = out
        return out

    def _keyword(self, key: str, value: Any) -> Any:
        value = _deref(value)
        if key in _SCHEMA_LISTS or (key in _ONE_SCHEMA and isinstance(value, list)):
            return [self._schema(s) for s in value]
        if key in _ONE_SCHEMA:
            return self._schema(value)
        if key in _SCHEMA_MAPS and isinstance(value, Mapping):
            return {
                k: _plain(s) if isinstance(_deref(s), list) else self._schema(s)
                for k, s in value.items()
            }
        return _plain(value)


def _plain(node: Any, _open: frozenset[int] = frozenset()) -> Any:
    """Deep copy of non-schema data (enum, const, required, ...) without jsonref proxies."""
    node = _deref(node)
    if isinstance(node, Mapping | list):
        if id(node) in _open:
            raise ContractError("cyclic $ref inside schema data (enum/const/default)")
        inner = _open | {id(node)}
        if isinstance(node, list):
            return [_plain(v, inner) for v in node]
        return {k: _plain(v, inner) for k, v in node.items()}
    return node


def _is_empty_schema(schema: Any) -> bool:
    return schema is None or schema is True or (isinstance(schema, Mapping) and not schema)


def _compile(schema: Any, where: str) -> tuple[Any, _Validator | None]:
    """(plain schema, compiled validator); the validator is None when nothing can fail."""
    if _is_empty_schema(_deref(schema)):
        return None, None
    try:
        plain = _SchemaFlattener().flatten(schema)
        return plain, fastjsonschema.compile(plain, use_default=False)
    except jsonref.JsonRefError as exc:
        raise ContractError(f"{where}: unresolvable $ref: {exc.message}") from exc
    except (fastjsonschema.JsonSchemaDefinitionException, re.error) as exc:
        raise ContractError(f"{where}: invalid schema: {exc}") from exc


# --------------------------------------------------------------------------------------------
# AsyncAPI structure -> channels
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _RawChannel:
    id: str
    address: str
    parameters: Mapping[str, Any]
    messages: list[tuple[str | None, Any]]  # (fallback name, message object)


def _mapping(node: Any, where: str) -> Mapping[str, Any]:
    node = _deref(node)
    if node is None:
        return {}
    if not isinstance(node, Mapping):
        raise ContractError(f"{where} must be an object, got {type(node).__name__}")
    return node


def _ref_name(node: Any) -> str | None:
    """Last segment of a $ref ("#/components/messages/lightMeasured" -> "lightMeasured")."""
    if isinstance(node, jsonref.JsonRef):
        return str(node.__reference__.get("$ref", "")).rstrip("/").rsplit("/", 1)[-1] or None
    return None


def _channels_v2(doc: Mapping[str, Any], warnings: list[str]) -> list[_RawChannel]:
    out = []
    for key, channel in _mapping(doc.get("channels"), "channels").items():
        channel = _mapping(channel, f"channel {key!r}")
        messages: list[tuple[str | None, Any]] = []
        seen: set[int] = set()
        # publish and subscribe messages both travel on the topic; keep each once.
        for op in ("publish", "subscribe"):
            message = _deref(_mapping(channel.get(op), f"{key}.{op}").get("message"))
            if message is None:
                continue
            for candidate in message.get("oneOf", [message]):
                if id(_deref(candidate)) not in seen:
                    seen.add(id(_deref(candidate)))
                    messages.append((_ref_name(candidate), candidate))
        out.append(_RawChannel(key, key, _mapping(channel.get("parameters"), key), messages))
    return out


def _channels_v3(doc: Mapping[str, Any], warnings: list[str]) -> list[_RawChannel]:
    out = []
    for key, channel in _mapping(doc.get("channels"), "channels").items():
        channel = _mapping(channel, f"channel {key!r}")
        address = channel.get("address")
        if address is None:  # 3.x: null/absent address means "unknown at design time"
            warnings.append(f"channel {key!r} has no address; it can never match a topic")
            continue
        messages = list(_mapping(channel.get("messages"), f"{key}.messages").items())
        out.append(
            _RawChannel(key, str(address), _mapping(channel.get("parameters"), key), messages)
        )
    return out


def _merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """JSON Merge Patch (RFC 7386) without copying untouched subtrees (they may be cyclic)."""
    result = dict(target)
    for key, value in patch.items():
        current = result.get(key)
        if value is None:
            result.pop(key, None)
        elif (
            isinstance(value, Mapping)
            and isinstance(current, Mapping)
            and _deref(value) is not _deref(current)
        ):
            result[key] = _merge_patch(current, value)
        else:
            result[key] = value
    return result


def _apply_traits(message: Mapping[str, Any]) -> dict[str, Any]:
    """Traits are merged in order, then the message's own fields win."""
    merged: dict[str, Any] = {}
    for trait in _deref(message.get("traits")) or []:
        trait = _deref(trait)
        # 2.x also allows [trait, extra-fields] pairs.
        for part in trait if isinstance(trait, list) else [trait]:
            merged = _merge_patch(merged, _mapping(part, "message trait"))
    own = {k: v for k, v in message.items() if k != "traits"}
    return _merge_patch(merged, own)


def _split_format(schema: Any, schema_format: str | None) -> tuple[Any, str | None]:
    """Unwrap a 3.x multi-format schema object ``{schemaFormat, schema}``."""
    node = _deref(schema)
    if isinstance(node, Mapping) and "schemaFormat" in node and "schema" in node:
        return node["schema"], str(node["schemaFormat"])
    return schema, schema_format


def _is_json_schema_format(schema_format: str | None) -> bool:
    return schema_format is None or bool(
        _JSON_SCHEMA_FORMAT.match(schema_format.replace(" ", "").lower())
    )


def _build_message(
    raw: Any,
    fallback: str | None,
    index: int,
    default_ct: str,
    where: str,
    warnings: list[str],
) -> Message:
    message = _apply_traits(_mapping(raw, where))
    name = str(message.get("name") or message.get("messageId") or fallback or f"message{index}")
    where = f"{where} message {name!r}"
    content_type = normalize_content_type(str(message.get("contentType") or default_ct))

    payload, payload_format = _split_format(message.get("payload"), message.get("schemaFormat"))
    headers, headers_format = _split_format(message.get("headers"), None)
    checked = True
    if not _is_json_schema_format(payload_format):
        warnings.append(
            f"{where}: payload schemaFormat {payload_format!r} is not supported; "
            "payload is not schema-checked"
        )
        payload, checked = None, False
    if not _is_json_schema_format(headers_format):
        warnings.append(
            f"{where}: headers schemaFormat {headers_format!r} is not supported; "
            "headers are not checked"
        )
        headers = None
    if (
        payload is not None
        and not is_json_content_type(content_type)
        and content_type not in _DECODERS
    ):
        warnings.append(
            f"{where}: no decoder registered for content type {content_type!r} "
            "(at load time); such payloads are accepted unchecked"
        )

    payload_schema, check_payload = _compile(payload, f"{where} payload")
    headers_schema, check_headers = _compile(headers, f"{where} headers")
    return Message(
        name,
        content_type,
        payload_schema,
        headers_schema,
        payload_format,
        checked,
        check_payload,
        check_headers,
    )


def _parameter_schema(param: Any) -> Any:
    """2.x: ``{schema: {...}}``; 3.x: ``enum``/``default``/``examples`` directly (only enum,
    and a non-standard ``pattern``, constrain values)."""
    param = _deref(param)
    if not isinstance(param, Mapping):
        return None
    if "schema" in param:
        return param["schema"]
    schema = {k: param[k] for k in ("enum", "pattern") if k in param}
    return schema or None


def _build_routes(
    raw_channels: list[_RawChannel], default_ct: str, warnings: list[str]
) -> tuple[list[Channel], list[_Route]]:
    channels: list[Channel] = []
    routes: dict[str, _Route] = {}
    for raw in raw_channels:
        where = f"channel {raw.id!r}"
        messages = tuple(
            _build_message(m, fallback, i, default_ct, where, warnings)
            for i, (fallback, m) in enumerate(raw.messages, start=1)
        )
        pattern, names = _address_pattern(raw.address)
        params: dict[str, Any] = {}
        checks: dict[str, _Validator] = {}
        for pname in dict.fromkeys(names):
            plain, check = _compile(
                _parameter_schema(raw.parameters.get(pname)), f"{where} parameter {pname!r}"
            )
            params[pname] = plain or {}
            if check is not None:
                checks[pname] = check
        channel = Channel(raw.id, raw.address, messages, params)
        channels.append(channel)

        route = routes.get(raw.address)
        if route is None:
            route = routes[raw.address] = _Route(raw.address, pattern, names, checks)
        else:
            warnings.append(
                f"{where} shares address {raw.address!r} with channel "
                f"{route.channels[0].id!r}; messages of both are accepted there"
            )
        route.channels.append(channel)
        route.entries.extend((channel, m) for m in messages)
    return channels, list(routes.values())


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def load_contract(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    base_uri: str | None = None,
    max_payload_bytes: int | None = DEFAULT_MAX_PAYLOAD_BYTES,
    cache_size: int = DEFAULT_CACHE_SIZE,
    decoders: Mapping[str, Decoder] | None = None,
    loader: Callable[[str], Any] | None = None,
) -> Contract:
    """Load an AsyncAPI 2.x/3.x document (YAML/JSON path, or an already-parsed dict).

    ``base_uri`` resolves relative external ``$ref``s (default: the file's location, or the
    working directory for a dict). ``max_payload_bytes=None`` disables the size guard.
    ``cache_size`` bounds the topic -> channel LRU. ``decoders`` adds per-contract decoders
    on top of :func:`register_decoder`'s global ones. ``loader`` replaces the local-file
    ``$ref`` loader (e.g. to allow http). Raises :class:`ContractError` on a broken document.
    """
    raw, base = _read_source(source, base_uri)
    if not isinstance(raw, Mapping):
        raise ContractError("an AsyncAPI document must be an object")
    doc = jsonref.replace_refs(
        raw, base_uri=base, loader=loader or _FileLoader(), jsonschema=False, lazy_load=True
    )
    try:
        return _build_contract(doc, max_payload_bytes, cache_size, decoders)
    except jsonref.JsonRefError as exc:
        raise ContractError(f"unresolvable $ref: {exc.message}") from exc


def _build_contract(
    doc: Mapping[str, Any],
    max_payload_bytes: int | None,
    cache_size: int,
    decoders: Mapping[str, Decoder] | None,
) -> Contract:
    spec = str(doc.get("asyncapi", ""))
    if spec.startswith("2."):
        read_channels = _channels_v2
    elif spec.startswith("3."):
        read_channels = _channels_v3
    else:
        raise ContractError(f"unsupported or missing 'asyncapi' version: {spec!r}")
    info = _mapping(doc.get("info"), "info")
    default_ct = normalize_content_type(str(doc.get("defaultContentType") or DEFAULT_CONTENT_TYPE))
    warnings: list[str] = []
    channels, routes = _build_routes(read_channels(doc, warnings), default_ct, warnings)
    return Contract(
        title=str(info.get("title", "untitled")),
        version=str(info.get("version", "?")),
        asyncapi=spec,
        default_content_type=default_ct,
        channels=channels,
        warnings=warnings,
        routes=routes,
        max_payload_bytes=max_payload_bytes,
        cache_size=cache_size,
        decoders=decoders,
    )
