"""The compiled contract: one MQTT message in, its channel, message name and errors out.

Every error string starts with a stable code followed by ``": "`` so callers can group them:

* ``unknown_topic``  no channel address matches the topic (or its parameters are not allowed)
* ``too_large``      the payload exceeds ``max_payload_bytes``
* ``bad_payload``    the payload cannot be decoded (invalid JSON, decoder error)
* ``bad_header``     the MQTT v5 user properties do not match the message's ``headers`` schema
* ``schema``         the decoded payload does not match the message's ``payload`` schema
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from mfg_assets.uns.contract.columns import _columnar_check, _ColumnarCheck
from mfg_assets.uns.contract.decoders import (
    _DECODERS,
    _NOT_DECODED,
    _is_json,
    _json_error,
    normalize_content_type,
)
from mfg_assets.uns.contract.match import _Route, _Router
from mfg_assets.uns.contract.model import (
    Channel,
    CheckResult,
    Decoder,
    Headers,
    Message,
    Payload,
)
from mfg_assets.uns.contract.schema import _coerce_headers, _run_check


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
        # MQTT topics repeat a lot: the router remembers recent topic -> route decisions.
        self._lookup = _Router(routes, cache_size).lookup
        # (id(message), array key) -> its column check, None where it cannot be proven
        self._column_checks: dict[tuple[int, str], _ColumnarCheck | None] = {}

    @property
    def name(self) -> str:
        return f"{self.title} v{self.version}"

    def __repr__(self) -> str:
        return f"<Contract {self.name!r}: {len(self.channels)} channels>"

    # -- topic matching ------------------------------------------------------------------

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


def _header_dict(headers: Headers | None) -> Mapping[str, Any] | None:
    if headers is None or isinstance(headers, Mapping):
        return headers
    return dict(headers)  # MQTT v5 user properties as (key, value) pairs; last one wins


def _describe_exception(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
