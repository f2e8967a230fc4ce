"""Hypothesis strategies for UNS messages, generated from the AsyncAPI contract's own schemas.

Valid payloads come from each message's ``payload_schema`` (hypothesis-jsonschema);
invalid ones replace a field by an extreme value (integers beyond 64 bits, floats with huge
exponents, unicode, deep nesting) or are raw bytes no JSON parser likes. NaN/inf cannot be
written as JSON; ``1e999`` (which parsers read as inf) stands in for them.

Sparkplug B documents come from the contract's ``SparkplugPayload`` schema, get values
(extreme integers and floats, NaN/inf, unicode) and a datatype, and are encoded with the
project's encoder (:func:`mfg_assets.uns.sparkplug.encode_payload`); garbage bytes go to the
same topics. A Sparkplug *family* is one edge node's stream (NBIRTH, DBIRTH, DATA, DEATH,
seq gaps), so the session's birth/alias/seq paths are exercised, not just "no birth".

Strategies are drawn as *families*: one schema-generated document and several cheap
variants of it (mutations, raw bytes, odd topics), each on its own topic. Generating a
document with hypothesis-jsonschema is what costs (milliseconds); routing one costs
microseconds, so a family gives the router many messages per generated document.
"""

from __future__ import annotations

import base64
import copy
import json
import math
from typing import Any

from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from mfg_assets.gateway.routing import message_id, payload_text
from mfg_assets.settings import DEFAULT_CONTRACT
from mfg_assets.uns import sparkplug
from mfg_assets.uns.contract import Channel, load_contract
from mfg_assets.uns.sparkplug.datatypes import _TYPE_CODES

CONTRACT = load_contract(DEFAULT_CONTRACT)
JSON_CHANNELS = [c for c in CONTRACT.channels if not c.address.startswith("spBv1.0")]
SPARKPLUG_SCHEMA = next(
    m.payload_schema for c in CONTRACT.channels if c.id == "sparkplugNode" for m in c.messages
)
T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z

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

_SCHEMA_STRATEGIES: dict[int, st.SearchStrategy[Any]] = {}


def documents(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """``from_schema(schema)``, built once per schema: hypothesis-jsonschema canonicalises
    and resolves a schema on every call, which cost more than drawing from it."""
    strategy = _SCHEMA_STRATEGIES.get(id(schema))
    if strategy is None:
        strategy = _SCHEMA_STRATEGIES[id(schema)] = from_schema(schema)
    return strategy


def dumps(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")


def identity(topic: str, payload: bytes) -> str:
    """What every row of a message carries back to it: bronze and device-event rows keep
    ``message_id``; quarantine rows keep the topic and the payload text."""
    return message_id(topic, payload)


def quarantine_identity(topic: str | None, kept: str) -> str:
    """:func:`identity` of a quarantine row (the inverse of ``payload_text``)."""
    payload = base64.b64decode(kept[7:]) if kept.startswith("base64:") else kept.encode()
    assert payload_text(payload) == kept
    return message_id(topic or "", payload)


def _nested(depth: int) -> Any:
    value: Any = 1.0
    for _ in range(depth):
        value = [value]
    return value


EXTREMES = EXTREME_INTS + EXTREME_FLOATS + ["", "\u202e\U0001f600", "\u0000", None, True, [], {}]


def _mutated(document: Any, key: str, value: Any) -> Any:
    if not isinstance(document, dict):
        return value
    return {**document, key: value}


# a cheap stand-in for from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,12}") (a tenth of the cost)
segment = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from("aZ09"),
    st.text(st.sampled_from("az09AZ_.-"), max_size=12),
)
# publishable over MQTT (no wildcards, no NUL) but not safe segments
# (control characters are left to the in-process tests: mosquitto drops a client that
# publishes one in a topic name)
odd_segment = st.sampled_from(["..", ".", "a%2Fb", "with space", "é", "-lead", "_", "%00"])


def topic_for(channel: Channel, values: dict[str, str]) -> str:
    topic = channel.address
    for name in channel.parameters:
        topic = topic.replace("{" + name + "}", values.get(name, "x"))
    return topic


Message = tuple[str, bytes, str]  # (topic, payload, kind)


@st.composite
def json_family(draw: st.DrawFn, tag: str, size: int = 40) -> list[Message]:
    """One schema-generated document of a JSON channel and up to ``size`` messages made
    from it: the document itself, then mutations (each field or a new one replaced by an
    extreme value, a drawn JSON value or deep nesting), raw bytes, odd segments and wrong
    depths. ``tag`` and the variant's number make the asset segment: one topic per message.
    The variants cost single integer draws; the document is what costs."""
    channel = draw(st.sampled_from(JSON_CHANNELS))
    message = draw(st.sampled_from(channel.messages))
    values = {name: draw(segment) for name in channel.parameters}
    values["enterprise"] = "acme"
    asset = next(n for n in channel.parameters if n.endswith("Id"))
    document = draw(documents(message.payload_schema))
    keys = [*document, "timestamp", "extra"] if isinstance(document, dict) else ["x"]
    replacements = [*EXTREMES, draw(json_value), _nested(draw(st.integers(20, 400)))]
    found: list[Message] = []
    for variant in range(draw(st.integers(1, size))):
        # 0: the document, 1: raw bytes, 2 .. 10: a field replaced; 11, 12: odd topic shapes
        pick = 0 if variant == 0 else draw(st.integers(1, 12))
        kind = "valid" if pick in (0, 11, 12) else "raw" if pick == 1 else "mutated"
        if kind == "raw":
            payload = draw(st.sampled_from(RAW))
        elif kind == "mutated":
            key = keys[draw(st.integers(0, len(keys) - 1))]
            replacement = replacements[draw(st.integers(0, len(replacements) - 1))]
            payload = dumps(_mutated(document, key, replacement))
        else:
            payload = dumps(document)
        place = {**values, asset: f"{tag}v{variant}"}
        if pick == 11:
            kind = "odd_segment"
            place["cell"] = draw(odd_segment)
        topic = topic_for(channel, place)
        if pick == 12:
            kind = "wrong_depth"
            topic = topic.rsplit("/", 1)[0] + draw(st.sampled_from(["", "/x/y"])) + "/q"
        found.append((topic, payload, kind))
    return found


# -- Sparkplug B ---------------------------------------------------------------------------

SCALAR_TYPES = [
    "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
    "Float", "Double", "Boolean", "String", "Text", "DateTime",
]  # fmt: skip
sparkplug_value = (
    st.none()
    | st.booleans()
    | st.sampled_from(EXTREME_INTS)
    | st.integers(-(2**63), 2**64 - 1)
    | st.sampled_from([*EXTREME_FLOATS, math.nan, math.inf, -math.inf])
    | st.floats()
    | text
)
GARBAGE = [b"", b"\x00", b"\xff" * 7, b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"{}"]


def _u64(value: Any, default: int) -> int:
    return value if isinstance(value, int) and 0 <= value < 2**64 else default


def _narrowed(schema: dict[str, Any]) -> dict[str, Any]:
    """The contract's Sparkplug schema without extra keys and with at most 6 metrics: every
    document it gives is valid under the contract's, and drawing one costs a tenth (the
    extra keys would be dropped by the encoder anyway)."""
    narrowed = copy.deepcopy(schema)
    narrowed["additionalProperties"] = False
    metrics = narrowed["properties"]["metrics"]
    metrics["maxItems"] = 6
    metrics["items"]["additionalProperties"] = False
    return narrowed


SPARKPLUG_DOCUMENT = _narrowed(SPARKPLUG_SCHEMA)


def _metric(doc: dict[str, Any], value: Any, datatype: Any) -> dict[str, Any]:
    """A schema-drawn metric document as the encoder's metric, with a value and a datatype
    (the drawn one when it is a Sparkplug type name, else ``datatype``, or inferred)."""
    metric = {k: doc[k] for k in ("name", "alias", "is_null") if k in doc}
    if "timestamp" in doc:
        metric["timestamp"] = _u64(doc["timestamp"], 2**64 - 1)
    if "alias" in metric:
        metric["alias"] = _u64(metric["alias"], 0)
    metric["value"] = value
    metric["datatype"] = doc["datatype"] if doc.get("datatype") in _TYPE_CODES else datatype
    return metric


def _encode(timestamp: Any, seq: int | None, metrics: list[dict[str, Any]]) -> bytes:
    """Encode what the encoder accepts: a metric whose value does not fit its datatype is
    encoded with the datatype inferred from the value, else as null, else left out."""
    kept = []
    for metric in metrics:
        for attempt in (
            metric,
            {**metric, "datatype": None},
            {**metric, "value": None, "is_null": True, "datatype": metric["datatype"] or "Int64"},
        ):
            try:
                sparkplug.encode_payload(T0, 0, [attempt])
            except ValueError:
                continue
            kept.append(attempt)
            break
    return sparkplug.encode_payload(_u64(timestamp, T0), seq, kept)


@st.composite
def sparkplug_family(draw: st.DrawFn, tag: str, size: int = 16) -> list[Message]:
    """Edge node ``tag``'s stream: maybe births, then DATA, commands, device deaths, seq
    gaps and garbage bytes, and maybe its death. The metrics come from one document the
    contract's Sparkplug schema generated; each message draws their values (extreme
    integers and floats, NaN/inf, unicode) and sometimes an extreme message timestamp."""
    group = draw(segment)
    device = draw(st.sampled_from(["d1", "dev é", "d.2"]))
    doc = draw(documents(SPARKPLUG_DOCUMENT))
    metrics = [m for m in doc["metrics"] if isinstance(m, dict)]
    datatypes = [draw(st.sampled_from([*SCALAR_TYPES, None])) for _ in metrics]
    found: list[Message] = []
    seq = 0

    def add(kind: str, extra: list[dict[str, Any]] | None = None, gap: bool = False) -> None:
        nonlocal seq
        timestamp = doc["timestamp"] + len(found)
        if draw(st.integers(0, 5)) == 0:
            timestamp = draw(st.sampled_from([0, 1, 10**16, 2**63, 2**64 - 1]))
        drawn = [
            _metric(m, draw(sparkplug_value), datatype)
            for m, datatype in zip(metrics, datatypes, strict=True)
        ]
        topic = sparkplug.format_topic(kind, group, tag, device if kind[0] == "D" else None)
        if kind == "NDEATH" or kind.endswith("CMD"):
            message_seq = None
        elif kind == "NBIRTH":
            message_seq = seq = 0
        else:
            seq = (seq + (draw(st.integers(2, 9)) if gap else 1)) & 0xFF
            message_seq = seq
        found.append((topic, _encode(timestamp, message_seq, (extra or []) + drawn), kind))

    bd_seq = {"name": "bdSeq", "value": 0, "datatype": "Int64"}
    if draw(st.integers(0, 3)) > 0:
        add("NBIRTH", [bd_seq])
        if draw(st.booleans()):
            add("DBIRTH")
    for _ in range(draw(st.integers(1, size))):
        # 0 .. 3: NDATA, 4 .. 7: DDATA, 8: a seq gap, 9: NCMD, 10: DDEATH, 11: garbage
        pick = draw(st.integers(0, 11))
        if pick == 11:
            topic = sparkplug.format_topic("NDATA", group, tag)
            garbage = draw(st.sampled_from(GARBAGE) | st.binary(max_size=64))
            found.append((topic, garbage, "garbage"))
        else:
            kind = "NDATA" if pick < 4 or pick == 8 else "DDATA" if pick < 8 else "NCMD"
            add("DDEATH" if pick == 10 else kind, gap=pick == 8)
    if draw(st.integers(0, 3)) == 0:
        add("NDEATH", [bd_seq])
    return found


@st.composite
def families(draw: st.DrawFn, tag: str, sparkplug_share: int = 4) -> list[Message]:
    """A JSON family, and every ``sparkplug_share``-th time (on average) a Sparkplug one."""
    found = draw(json_family(f"{tag}j"))
    if draw(st.integers(1, sparkplug_share)) == 1:
        found += draw(sparkplug_family(f"{tag}s"))
    return found
