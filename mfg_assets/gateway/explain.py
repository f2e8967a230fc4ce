"""`mfg validate`: one message judged the way the gateway judges it, with every error.

The gateway decodes Sparkplug B payloads before validating them (the contract's decoder for
``application/vnd.sparkplug-b+protobuf``); without that decoder the contract cannot look
inside a protobuf and calls any Sparkplug payload valid. The contract's validator stops at
the first schema error per message (it is compiled for the hot path); a person fixing a
payload wants them all, so the decoded document is checked again against each candidate
message's public ``payload_schema`` with ``jsonschema``, which iterates every error.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

from mfg_assets.uns import sparkplug
from mfg_assets.uns.contract import CheckResult, Contract


def read_payload(raw: str) -> bytes:
    """``@FILE`` (the file's bytes), ``base64:...`` or ``hex:...`` (binary payloads such as
    Sparkplug B on a command line), else the text itself as UTF-8."""
    if raw.startswith("@"):
        return Path(raw[1:]).read_bytes()
    kind, _, data = raw.partition(":")
    try:
        if kind == "base64" and data:
            return base64.b64decode(data, validate=True)
        if kind == "hex" and data:
            return bytes.fromhex(data)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"payload is not valid {kind}: {exc}") from None
    return raw.encode("utf-8")


def explain(contract: Contract, topic: str, payload: bytes) -> tuple[CheckResult, list[str]]:
    """The contract's verdict and every error it implies (empty when the message is valid)."""
    sparkplug.register_contract_decoder()  # as the gateway's router does
    result = contract.check(topic, payload)
    if result.ok or result.channel is None or result.document is None:
        return result, list(result.errors)
    errors = [e for e in result.errors if not e.startswith("schema: ")]
    for message in result.channel.messages:
        if message.payload_schema is None or message.content_type != result.content_type:
            continue
        errors += [
            f"schema: {message.name}: {e}"
            for e in schema_errors(message.payload_schema, result.document)
        ]
    return result, errors or list(result.errors)


def schema_errors(schema: Any, document: Any) -> list[str]:
    """Every error of ``document`` against a JSON Schema, in document order."""
    import jsonschema

    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    found = sorted(
        cls(schema).iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path]
    )
    return [f"{_path(e.absolute_path)}: {e.message[:300]}" for e in found]


def _path(parts: Any) -> str:
    text = "data"
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text
