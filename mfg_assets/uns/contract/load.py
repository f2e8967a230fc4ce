"""Read an AsyncAPI 2.6 / 3.x document (YAML or JSON, ``$ref`` resolved with jsonref, traits
merged) and compile its MQTT channels into a :class:`~mfg_assets.uns.contract.validate.Contract`."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import jsonref
import orjson
import yaml

from mfg_assets.uns.contract.decoders import _DECODERS, is_json_content_type, normalize_content_type
from mfg_assets.uns.contract.match import _address_pattern, _Route
from mfg_assets.uns.contract.model import Channel, ContractError, Decoder, Message, _Validator
from mfg_assets.uns.contract.schema import _compile, _deref
from mfg_assets.uns.contract.validate import Contract

DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
DEFAULT_CACHE_SIZE = 4096
DEFAULT_CONTENT_TYPE = "application/json"

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
# AsyncAPI structure -> channels
# --------------------------------------------------------------------------------------------

_JSON_SCHEMA_FORMAT = re.compile(
    r"^application/(?:vnd\.aai\.asyncapi|schema)(?:\+json|\+yaml)?(?:;.*)?$"
)


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
