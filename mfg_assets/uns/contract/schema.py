"""JSON Schemas: jsonref proxy graph -> plain, self-contained schema -> compiled function, and
running a compiled check (with string -> JSON scalar coercion for MQTT user properties)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import fastjsonschema
import jsonref
import orjson

from mfg_assets.uns.contract.model import ContractError, _Validator

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
