"""What a compiled contract is made of and answers with: channels, messages, check results."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

Decoder = Callable[[bytes], Any]
Payload = bytes | bytearray | memoryview | str
Headers = Mapping[str, Any] | Iterable[tuple[str, Any]]
_Validator = Callable[[Any], Any]


class ContractError(ValueError):
    """The document cannot be turned into a contract (bad structure, broken $ref, bad schema)."""


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
