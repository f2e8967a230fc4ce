"""Hypothesis strategies for UNS messages, generated from the AsyncAPI contract's own schemas.

Valid payloads come from each JSON message's ``payload_schema`` (hypothesis-jsonschema);
invalid ones replace a field by an extreme value (integers beyond 64 bits, floats with huge
exponents, unicode, deep nesting) or are raw bytes no JSON parser likes. NaN/inf cannot be
written as JSON; ``1e999`` (which parsers read as inf) stands in for them.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from mfg_assets.settings import DEFAULT_CONTRACT
from mfg_assets.uns.contract import Channel, load_contract

CONTRACT = load_contract(DEFAULT_CONTRACT)
JSON_CHANNELS = [c for c in CONTRACT.channels if not c.address.startswith("spBv1.0")]

EXTREME_INTS = [0, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**70, -(2**63) - 1]
EXTREME_FLOATS = [1e308, -1e308, 5e-324, 1.7976931348623157e308, -0.0, 1e-300]
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)  # no lone surrogates
leaf = (
    st.none()
    | st.booleans()
    | st.sampled_from(EXTREME_INTS)
    | st.integers()
    | st.sampled_from(EXTREME_FLOATS)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_value = st.recursive(
    leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=16,
)
RAW = [
    b'{"timestamp": 1e999, "machineType": "w", "readings": [{"sensor": "a", "value": 1}]}',
    b'{"timestamp": 1793491200000, "machineType": "w", "readings": [{"sensor": "a", '
    b'"value": 1e999}]}',
    b'{"timestamp": 99999999999999999999999999999, "machineType": "w", "readings": []}',
    b"[" * 3000 + b"]" * 3000,
    b'{"a":' * 600 + b"1" + b"}" * 600,
    b"\xff\xfe\x00garbage",
    b"",
    b"null",
    '{"timestamp": "\u202e\U0001f600", "machineType": "\u0000"}'.encode(),
]


def dumps(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")


def _nested(depth: int) -> Any:
    value: Any = 1.0
    for _ in range(depth):
        value = [value]
    return value


def _mutated(draw: st.DrawFn, document: dict[str, Any]) -> dict[str, Any]:
    key = draw(st.sampled_from([*document, "timestamp", "extra"]))
    choice = draw(st.integers(0, 2))
    if choice == 0:
        value = draw(st.sampled_from(EXTREME_INTS + EXTREME_FLOATS))
    elif choice == 1:
        value = draw(json_value)
    else:
        value = _nested(draw(st.integers(20, 400)))
    return {**document, key: value}


@st.composite
def payloads(draw: st.DrawFn, channel: Channel) -> tuple[bytes, str]:
    """(payload bytes, "valid" | "mutated" | "raw") for a message of ``channel``."""
    message = draw(st.sampled_from(channel.messages))
    kind = draw(st.sampled_from(["valid", "valid", "mutated", "raw"]))
    if kind == "raw":
        return draw(st.sampled_from(RAW)), kind
    document = draw(from_schema(message.payload_schema))
    if kind == "mutated":
        document = _mutated(draw, document)
    return dumps(document), kind


segment = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,12}", fullmatch=True)
# publishable over MQTT (no wildcards, no NUL) but not safe segments
# (control characters are left to the in-process tests: mosquitto drops a client that
# publishes one in a topic name)
odd_segment = st.sampled_from(["..", ".", "a%2Fb", "with space", "é", "-lead", "_", "%00"])


def topic_for(channel: Channel, values: dict[str, str]) -> str:
    topic = channel.address
    for name in channel.parameters:
        topic = topic.replace("{" + name + "}", values.get(name, "x"))
    return topic


@st.composite
def messages(draw: st.DrawFn, unique: str = "") -> tuple[str, bytes, str]:
    """(topic, payload, kind); ``unique`` is made the asset segment (one topic per message)."""
    channel = draw(st.sampled_from(JSON_CHANNELS))
    values = {name: draw(segment) for name in channel.parameters}
    values["enterprise"] = "acme"
    asset = next(n for n in channel.parameters if n.endswith("Id"))
    if unique:
        values[asset] = unique
    shape = draw(st.sampled_from(["channel"] * 8 + ["odd_segment", "wrong_depth"]))
    if shape == "odd_segment":
        values["cell"] = draw(odd_segment)
    topic = topic_for(channel, values)
    if shape == "wrong_depth":
        topic = topic.rsplit("/", 1)[0] + draw(st.sampled_from(["", "/x/y"])) + "/q"
    payload, kind = draw(payloads(channel))
    return topic, payload, kind if shape == "channel" else shape
