"""Content types and the payload decoders registered for them (JSON is built in)."""

from __future__ import annotations

import orjson

from mfg_assets.uns.contract.model import Decoder

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
