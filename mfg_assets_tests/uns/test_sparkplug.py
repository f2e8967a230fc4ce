"""Sparkplug B codec: topics, payload round trips, session state, malformed input.

Run as a script for the decode throughput benchmark:
``python mfg_assets_tests/uns/test_sparkplug.py``.
"""

from __future__ import annotations

import base64
import json
import random
import struct
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from mfg_assets.uns import sparkplug_b_pb2 as pb
from mfg_assets.uns.sparkplug import (
    CONTENT_TYPE,
    SparkplugDecodeError,
    SparkplugSession,
    SparkplugTopic,
    decode_for_contract,
    decode_payload,
    encode_payload,
    format_topic,
    parse_topic,
    rebirth_command,
    register_contract_decoder,
)
from mfg_assets.uns.sparkplug import Metric as SpMetric

TS = 1_700_000_000_000
G, N, D = "plant1", "edge1", "press7"


def topic(message_type: str, device: str | None = None) -> str:
    return format_topic(message_type, G, N, device)


def single(datatype: str, value: Any, **extra: Any) -> dict[str, Any]:
    """Encode one metric, decode it back, return the decoded metric."""
    data = encode_payload(TS, 0, [{"name": "m", "datatype": datatype, "value": value, **extra}])
    (metric,) = decode_payload(data)["metrics"]
    return metric


# --------------------------------------------------------------------------- topics


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("spBv1.0/plant1/NBIRTH/edge1", SparkplugTopic("NBIRTH", G, N)),
        ("spBv1.0/plant1/NDEATH/edge1", SparkplugTopic("NDEATH", G, N)),
        ("spBv1.0/plant1/NDATA/edge1", SparkplugTopic("NDATA", G, N)),
        ("spBv1.0/plant1/NCMD/edge1", SparkplugTopic("NCMD", G, N)),
        ("spBv1.0/plant1/DBIRTH/edge1/press7", SparkplugTopic("DBIRTH", G, N, D)),
        ("spBv1.0/plant1/DDEATH/edge1/press7", SparkplugTopic("DDEATH", G, N, D)),
        ("spBv1.0/plant1/DDATA/edge1/press7", SparkplugTopic("DDATA", G, N, D)),
        ("spBv1.0/plant1/DCMD/edge1/press7", SparkplugTopic("DCMD", G, N, D)),
        ("spBv1.0/STATE/scada-1", SparkplugTopic("STATE", host_id="scada-1")),
    ],
)
def test_topic_round_trip(text: str, expected: SparkplugTopic) -> None:
    parsed = parse_topic(text)
    assert parsed == expected
    assert str(parsed) == text
    args = (parsed.message_type, parsed.group_id, parsed.edge_node_id, parsed.device_id)
    assert format_topic(*args, host_id=parsed.host_id) == text
    assert parsed.is_state == (parsed.message_type == "STATE")
    assert parsed.is_device == (parsed.device_id is not None)


@pytest.mark.parametrize("text", ["plant/area/line", "spAv1.0/g/NDATA/n", "", "STATE/host"])
def test_foreign_topics_are_none(text: str) -> None:
    assert parse_topic(text) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("spBv1.0/g/NDATA", "expected spBv1.0/<group_id>"),
        ("spBv1.0/g/NDATA/n/d/x", "expected spBv1.0/<group_id>"),
        ("spBv1.0/g/NFOO/n", "unknown message type 'NFOO'"),
        ("spBv1.0/g/NDATA/n/d", "NDATA takes no device_id"),
        ("spBv1.0/g/DDATA/n", "DDATA needs a device_id"),
        ("spBv1.0//NDATA/n", "group_id must be a non-empty string"),
        ("spBv1.0/g/NDATA/", "edge_node_id must be a non-empty string"),
        ("spBv1.0/g/DDATA/n/", "device_id must be a non-empty string"),
        ("spBv1.0/g+/NDATA/n", "group_id 'g+' must not contain '+'"),
        ("spBv1.0/g/NDATA/#", "edge_node_id '#' must not contain '#'"),
        ("spBv1.0/STATE/", "host_id must be a non-empty string"),
    ],
)
def test_malformed_topics_raise(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("+", r"\+").replace("$", r"\$")):
        parse_topic(text)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("NDATA", "g/x", "n"), {}, "group_id 'g/x' must not contain '/'"),
        (("NDATA", "g", "n+"), {}, r"edge_node_id 'n\+' must not contain '\+'"),
        (("DDATA", "g", "n", "d#"), {}, "device_id 'd#' must not contain '#'"),
        (("DDATA", "g", "n"), {}, "device_id must be a non-empty string"),
        (("NDATA", "", "n"), {}, "group_id must be a non-empty string"),
        (("NDATA", "g", "n", "d"), {}, "NDATA is a node message and takes no device_id"),
        (("NFOO", "g", "n"), {}, "unknown Sparkplug message type 'NFOO'"),
        (("STATE", "g"), {"host_id": "h"}, "a STATE topic takes only host_id"),
        (("STATE",), {}, "host_id must be a non-empty string"),
        (("NDATA", "g", "n"), {"host_id": "h"}, "host_id is only valid for STATE"),
    ],
)
def test_format_topic_rejects(args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        format_topic(*args, **kwargs)


# --------------------------------------------------------------------------- payload codec

SCALARS = [
    ("Int8", -128),
    ("Int8", 127),
    ("Int8", -1),
    ("Int16", -32768),
    ("Int16", 32767),
    ("Int32", -(2**31)),
    ("Int32", 2**31 - 1),
    ("Int64", -(2**63)),
    ("Int64", 2**63 - 1),
    ("UInt8", 255),
    ("UInt16", 65535),
    ("UInt32", 2**32 - 1),
    ("UInt64", 2**64 - 1),
    ("Float", 1.5),
    ("Float", -0.25),
    ("Double", 3.141592653589793),
    ("Double", -1e300),
    ("Boolean", True),
    ("Boolean", False),
    ("String", "Grüße 温度"),
    ("String", ""),
    ("DateTime", TS),
    ("Text", "line 1\nline 2"),
    ("UUID", "2b6f0cc9-04a4-4f5e-9f0a-6d4b1e0e9c1e"),
]


@pytest.mark.parametrize(("datatype", "value"), SCALARS)
def test_scalar_round_trip(datatype: str, value: Any) -> None:
    metric = single(datatype, value, alias=7, timestamp=TS + 1)
    assert metric == {
        "name": "m",
        "alias": 7,
        "timestamp": TS + 1,
        "datatype": datatype,
        "value": value,
    }
    json.dumps(metric)  # documents must be JSON-able


def test_bytes_round_trip_as_base64() -> None:
    raw = bytes(range(256))
    metric = single("Bytes", raw)
    assert metric["value"] == base64.b64encode(raw).decode()
    # the base64 form is accepted back, so a decoded document re-encodes
    assert single("Bytes", metric["value"])["value"] == metric["value"]


def test_payload_envelope_and_dataclass_metric() -> None:
    data = encode_payload(
        TS,
        255,
        [SpMetric(name="a", value=2.5), SpMetric(name="b", value=3)],
        uuid="schema-1",
        body=b"\x01\x02",
    )
    doc = decode_payload(data)
    assert doc["timestamp"] == TS and doc["seq"] == 255 and doc["uuid"] == "schema-1"
    assert doc["body"] == "AQI="
    assert [(m["datatype"], m["value"]) for m in doc["metrics"]] == [("Double", 2.5), ("Int64", 3)]


def test_null_metric_and_flags() -> None:
    data = encode_payload(
        TS,
        1,
        [
            {"name": "n", "datatype": "Int32", "value": None, "is_historical": True},
            {"name": "t", "datatype": "String", "value": "x", "is_transient": True},
        ],
    )
    null, transient = decode_payload(data)["metrics"]
    assert null == {
        "name": "n",
        "datatype": "Int32",
        "value": None,
        "is_null": True,
        "is_historical": True,
    }
    assert transient["is_transient"] is True


@pytest.mark.parametrize("wire", [0xFF, 0xFFFFFFFF])
def test_signed_values_from_either_sign_extension(wire: int) -> None:
    # Python Tahu sends Int8 -1 as 255, Java/C as 0xFFFFFFFF; both mean -1.
    payload = pb.Payload(timestamp=TS, seq=0)
    payload.metrics.add(name="x", datatype=pb.Int8, int_value=wire)
    assert decode_payload(payload.SerializeToString())["metrics"][0]["value"] == -1


def test_signed_values_use_java_wire_form() -> None:
    data = encode_payload(TS, 0, [{"name": "x", "datatype": "Int16", "value": -2}])
    assert pb.Payload.FromString(data).metrics[0].int_value == 0xFFFFFFFE


@pytest.mark.parametrize(
    ("datatype", "value", "message"),
    [
        ("Int8", 128, "out of range for Int8"),
        ("UInt8", -1, "out of range"),
        ("UInt64", 2**64, "out of range"),
        ("Int32", 1.5, "expected an int"),
        ("Boolean", 1, "expected a bool"),
        ("Double", "1.0", "expected a number"),
        ("String", 5, "expected a str"),
        ("Bytes", "not base64!", "must be base64"),
        ("Nope", 1, "unknown Sparkplug datatype 'Nope'"),
        ("Template", {}, "encoding datatype Template"),
    ],
)
def test_encode_rejects_bad_values(datatype: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_payload(TS, 0, [{"name": "m", "datatype": datatype, "value": value}])


def test_encode_rejects_bad_envelope() -> None:
    with pytest.raises(ValueError, match="seq 256 out of range"):
        encode_payload(TS, 256, [])
    with pytest.raises(ValueError, match="needs a name or an alias"):
        encode_payload(TS, 0, [{"value": 1.0}])
    with pytest.raises(ValueError, match="unknown metric keys"):
        encode_payload(TS, 0, [{"name": "x", "valeu": 1.0}])
    with pytest.raises(ValueError, match="null metric needs an explicit datatype"):
        encode_payload(TS, 0, [{"name": "x"}])


def test_datetime_objects_encode_as_ms() -> None:
    when = datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert single("DateTime", when)["value"] == int(when.timestamp() * 1000)


def test_dataset_round_trip() -> None:
    value = {
        "columns": ["step", "temp", "ok", "note"],
        "types": ["Int32", "Double", "Boolean", "String"],
        "rows": [[1, 20.5, True, "start"], [-2, None, False, "cold"]],
    }
    assert single("DataSet", value) == {"name": "m", "datatype": "DataSet", "value": value}


def test_dataset_shape_errors() -> None:
    with pytest.raises(ValueError, match="row 0 has 1 values for 2 columns"):
        single("DataSet", {"columns": ["a", "b"], "types": ["Int8", "Int8"], "rows": [[1]]})
    payload = pb.Payload(timestamp=TS)
    metric = payload.metrics.add(name="ds", datatype=pb.DataSet)
    metric.dataset_value.columns.extend(["a", "b"])
    metric.dataset_value.types.append(pb.Int8)
    with pytest.raises(SparkplugDecodeError, match="2 columns but 1 types"):
        decode_payload(payload.SerializeToString())


def test_properties_round_trip() -> None:
    properties = {
        "engUnit": "degC",
        "Quality": {"type": "Int32", "value": 192},
        "limits": {"high": 90.0, "low": -5.0},
        "history": [{"k": "a"}, {"k": "b"}],
        "comment": {"type": "String", "value": None},
    }
    metric = single("Double", 1.0, properties=properties)
    assert metric["properties"] == {
        "engUnit": "degC",
        "Quality": 192,
        "limits": {"high": 90.0, "low": -5.0},
        "history": [{"k": "a"}, {"k": "b"}],
        "comment": None,
    }


@pytest.mark.parametrize(
    ("datatype", "value"),
    [
        ("Int8Array", [-128, 0, 127]),
        ("UInt16Array", [0, 65535]),
        ("Int64Array", [-(2**63), 2**63 - 1]),
        ("DoubleArray", [1.5, -2.25]),
        ("FloatArray", [0.5]),
        ("DateTimeArray", [TS, TS + 1]),
        ("StringArray", ["a", "", "Grüße"]),
        ("UInt32Array", []),
    ],
)
def test_array_round_trip(datatype: str, value: list) -> None:
    assert single(datatype, value)["value"] == value


def test_boolean_array_is_passed_through_as_unsupported() -> None:
    payload = pb.Payload(timestamp=TS)
    payload.metrics.add(name="b", datatype=pb.BooleanArray, bytes_value=b"\x02\x00\x00\x00\x80")
    (metric,) = decode_payload(payload.SerializeToString())["metrics"]
    assert metric["unsupported"] is True
    assert metric["value"] == base64.b64encode(b"\x02\x00\x00\x00\x80").decode()


def test_template_decodes_as_nested_dict() -> None:
    payload = pb.Payload(timestamp=TS, seq=0)
    metric = payload.metrics.add(name="Motor1", datatype=pb.Template)
    template = metric.template_value
    template.version, template.template_ref, template.is_definition = "v1", "Motor", False
    template.metrics.add(name="rpm", datatype=pb.Int32, int_value=0xFFFFFFFF)
    template.parameters.add(name="max", type=pb.Double, double_value=3000.0)
    (decoded,) = decode_payload(payload.SerializeToString())["metrics"]
    assert decoded["value"] == {
        "is_definition": False,
        "version": "v1",
        "template_ref": "Motor",
        "metrics": [{"name": "rpm", "datatype": "Int32", "value": -1}],
        "parameters": [{"name": "max", "type": "Double", "value": 3000.0}],
    }


def test_datatype_and_value_field_mismatch_is_a_decode_error() -> None:
    payload = pb.Payload(timestamp=TS)
    payload.metrics.add(name="x", datatype=pb.Boolean, string_value="yes")
    with pytest.raises(SparkplugDecodeError, match="metric 'x': datatype Boolean cannot be"):
        decode_payload(payload.SerializeToString())


def test_contract_decoder() -> None:
    registry: dict[str, Any] = {}
    register_contract_decoder(registry.__setitem__)
    assert registry == {CONTENT_TYPE: decode_for_contract}
    assert CONTENT_TYPE == "application/vnd.sparkplug-b+protobuf"
    data = encode_payload(TS, 3, [{"name": "x", "value": 1.0}])
    assert decode_for_contract(data) == decode_payload(data)


# --------------------------------------------------------------------------- session


def nbirth(seq: int = 0, bd_seq: int = 0) -> bytes:
    return encode_payload(
        TS,
        seq,
        [
            {"name": "bdSeq", "datatype": "Int64", "value": bd_seq},
            {"name": "Node Control/Rebirth", "datatype": "Boolean", "value": False},
            {"name": "Properties/Firmware", "datatype": "String", "value": "4.2"},
            {"name": "cpu", "alias": 1, "datatype": "Float", "value": 0.5},
        ],
    )


def dbirth(seq: int) -> bytes:
    return encode_payload(
        TS,
        seq,
        [
            {"name": "temp", "alias": 10, "datatype": "Double", "value": 20.0},
            {"name": "count", "alias": 11, "datatype": "Int16", "value": 0},
            {"name": "Device Info/Serial", "alias": 12, "datatype": "String", "value": "SN-9"},
            {"name": "Properties/Rated kW", "alias": 13, "datatype": "Double", "value": 7.5},
            {"name": "Properties/Model", "alias": 14, "datatype": "Text", "value": "P-700"},
        ],
    )


def ddata(seq: int, *metrics: tuple[int, Any, str]) -> bytes:
    """DDATA by alias only, without datatypes (as Sparkplug 3.0 recommends)."""
    items = [{"alias": a, "value": v, "datatype": t, "timestamp": TS} for a, v, t in metrics]
    return encode_payload(TS, seq, items, include_datatypes=False)


def ndeath(bd_seq: int) -> bytes:
    return encode_payload(TS, None, [{"name": "bdSeq", "datatype": "Int64", "value": bd_seq}])


@pytest.fixture
def born() -> SparkplugSession:
    session = SparkplugSession()
    assert session.handle(topic("NBIRTH"), nbirth(seq=0, bd_seq=3)).rebirth_needed is None
    assert session.handle(topic("DBIRTH", D), dbirth(seq=1)).rebirth_needed is None
    return session


def test_birth_then_data_resolves_aliases_and_datatypes(born: SparkplugSession) -> None:
    event = born.handle(topic("DDATA", D), ddata(2, (10, 21.5, "Double"), (11, -3, "Int16")))
    assert event.rebirth_needed is None
    assert (event.group_id, event.edge_node_id, event.device_id) == (G, N, D)
    assert event.is_data and not event.is_birth and event.online
    assert event.metrics == [
        {"alias": 10, "name": "temp", "timestamp": TS, "datatype": "Double", "value": 21.5},
        # Int16 -3 arrives as uint32 0xFFFFFFFD: only the birth's datatype makes it -3
        {"alias": 11, "name": "count", "timestamp": TS, "datatype": "Int16", "value": -3},
    ]
    assert born.node_online(G, N) and born.device_online(G, N, D)


def test_ndata_resolves_node_aliases(born: SparkplugSession) -> None:
    event = born.handle(parse_topic(topic("NDATA")), ddata(2, (1, 0.75, "Float")))
    assert event.rebirth_needed is None
    assert event.metrics[0]["name"] == "cpu" and event.metrics[0]["datatype"] == "Float"


def test_seq_wraps_and_gap_needs_rebirth(born: SparkplugSession) -> None:
    seqs = [*range(2, 256), 0, 1]
    for seq in seqs:
        event = born.handle(topic("DDATA", D), ddata(seq, (10, 1.0, "Double")))
        assert event.rebirth_needed is None, seq
    event = born.handle(topic("DDATA", D), ddata(5, (10, 1.0, "Double")))
    assert event.rebirth_needed == "seq gap: expected 2, got 5"
    assert event.metrics[0]["name"] == "temp"  # the data itself is still delivered
    # resynchronised: the next in-order message is clean
    assert born.handle(topic("DDATA", D), ddata(6, (10, 1.0, "Double"))).rebirth_needed is None


def test_missing_seq_needs_rebirth(born: SparkplugSession) -> None:
    data = encode_payload(TS, None, [{"alias": 10, "value": 1.0}])
    assert born.handle(topic("DDATA", D), data).rebirth_needed == "DDATA without seq"


def test_unknown_alias_needs_rebirth(born: SparkplugSession) -> None:
    event = born.handle(topic("DDATA", D), ddata(2, (10, 1.0, "Double"), (99, 2.0, "Double")))
    assert event.rebirth_needed == "unknown alias 99"
    assert event.metrics[1] == {"alias": 99, "timestamp": TS, "datatype": "Unknown", "value": 2.0}


def test_node_alias_is_not_a_device_alias(born: SparkplugSession) -> None:
    event = born.handle(topic("DDATA", D), ddata(2, (1, 1.0, "Float")))
    assert event.rebirth_needed == "unknown alias 1"


def test_data_before_birth_needs_rebirth() -> None:
    session = SparkplugSession()
    event = session.handle(topic("NDATA"), ddata(0, (1, 1.0, "Double")))
    assert event.rebirth_needed == f"NDATA before NBIRTH of {G}/{N}"
    assert not event.online
    event = session.handle(topic("DDATA", D), ddata(1, (10, 1.0, "Double")))
    assert event.rebirth_needed == f"DDATA before NBIRTH of {G}/{N}"
    session.handle(topic("NBIRTH"), nbirth(seq=7))
    event = session.handle(topic("DDATA", D), ddata(8, (10, 1.0, "Double")))
    assert event.rebirth_needed == f"DDATA before DBIRTH of {D}"
    event = session.handle(topic("DBIRTH", "other"), dbirth(seq=9))
    assert event.rebirth_needed is None and session.device_online(G, N, "other")


def test_ndeath_with_matching_bdseq_marks_node_and_devices_offline(born: SparkplugSession) -> None:
    event = born.handle(topic("NDEATH"), ndeath(3))
    assert event.is_death and not event.online and not event.stale_death
    assert not born.node_online(G, N) and not born.device_online(G, N, D)
    event = born.handle(topic("DDATA", D), ddata(2, (10, 1.0, "Double")))
    assert event.rebirth_needed == f"DDATA before NBIRTH of {G}/{N}"


def test_stale_ndeath_is_ignored(born: SparkplugSession) -> None:
    event = born.handle(topic("NDEATH"), ndeath(2))  # the will of the previous MQTT session
    assert event.stale_death and event.online
    assert born.node_online(G, N) and born.device_online(G, N, D)
    assert born.handle(topic("DDATA", D), ddata(2, (10, 1.0, "Double"))).rebirth_needed is None


def test_nbirth_resets_devices(born: SparkplugSession) -> None:
    born.handle(topic("NBIRTH"), nbirth(seq=0, bd_seq=4))
    assert born.node_online(G, N) and not born.device_online(G, N, D)
    event = born.handle(topic("DDATA", D), ddata(1, (10, 1.0, "Double")))
    assert event.rebirth_needed == f"DDATA before DBIRTH of {D}"
    born.handle(topic("NDEATH"), ndeath(3))  # older session's death: ignored
    assert born.node_online(G, N)


def test_ddeath_marks_only_the_device_offline(born: SparkplugSession) -> None:
    event = born.handle(topic("DDEATH", D), encode_payload(TS, 2, []))
    assert event.is_death and not event.online and event.rebirth_needed is None
    assert born.node_online(G, N) and not born.device_online(G, N, D)
    event = born.handle(topic("DDATA", D), ddata(3, (10, 1.0, "Double")))
    assert event.rebirth_needed == f"DDATA before DBIRTH of {D}"


def test_device_and_node_info(born: SparkplugSession) -> None:
    assert born.device_info(G, N, D) == {
        "Device Info/Serial": "SN-9",
        "Properties/Rated kW": 7.5,
        "Properties/Model": "P-700",
    }
    assert born.node_info(G, N) == {"Properties/Firmware": "4.2"}
    assert born.device_info(G, N, "nope") == {}
    assert born.device_info("x", "y", "z") == {}


def test_commands_resolve_names_without_touching_state(born: SparkplugSession) -> None:
    data = encode_payload(TS, None, [{"alias": 10, "value": 5.0}], include_datatypes=False)
    event = born.handle(topic("DCMD", D), data)
    assert event.is_command and event.rebirth_needed is None
    assert event.metrics[0]["name"] == "temp"
    assert born.handle(topic("DDATA", D), ddata(2, (10, 1.0, "Double"))).rebirth_needed is None


def test_state_messages() -> None:
    session = SparkplugSession()
    event = session.handle("spBv1.0/STATE/scada", b'{"online": true, "timestamp": 1}')
    assert event.online and session.host_online("scada")
    session.handle("spBv1.0/STATE/scada", b'{"online": false, "timestamp": 2}')
    assert not session.host_online("scada")
    with pytest.raises(SparkplugDecodeError, match="STATE payload"):
        session.handle("spBv1.0/STATE/scada", b"ONLINE")


def test_handle_rejects_foreign_topic() -> None:
    with pytest.raises(ValueError, match="not a Sparkplug B topic"):
        SparkplugSession().handle("plant/area/line", b"")


def test_rebirth_command() -> None:
    cmd_topic, data = rebirth_command(G, N, timestamp_ms=TS)
    assert cmd_topic == f"spBv1.0/{G}/NCMD/{N}"
    assert decode_payload(data) == {
        "timestamp": TS,
        "seq": None,
        "metrics": [
            {"name": "Node Control/Rebirth", "timestamp": TS, "datatype": "Boolean", "value": True}
        ],
    }
    assert abs(decode_payload(rebirth_command(G, N)[1])["timestamp"] - time.time() * 1000) < 60e3


# --------------------------------------------------------------------------- malformed input


def rich_payload() -> bytes:
    return encode_payload(
        TS,
        9,
        [
            {
                "name": "ds",
                "alias": 1,
                "datatype": "DataSet",
                "value": {
                    "columns": ["a", "b"],
                    "types": ["Int8", "String"],
                    "rows": [[1, "x"], [-1, None]],
                },
            },
            {
                "name": "s",
                "alias": 2,
                "datatype": "String",
                "value": "héllo",
                "properties": {"engUnit": "m", "nested": {"q": 1}},
            },
            {"name": "arr", "alias": 3, "datatype": "DoubleArray", "value": [1.0, 2.0]},
            {"name": "sa", "alias": 4, "datatype": "StringArray", "value": ["a", "b"]},
            {"name": "i", "alias": 5, "datatype": "Int32", "value": -5},
            {"name": "b", "alias": 6, "datatype": "Bytes", "value": b"\x00\xff"},
        ],
        uuid="u",
        body=b"body",
    )


def mutations(data: bytes, rng: random.Random, count: int) -> list[bytes]:
    out = []
    for _ in range(count):
        kind = rng.randrange(4)
        if kind == 0:  # truncation
            out.append(data[: rng.randrange(len(data))])
        elif kind == 1:  # bit flips
            buf = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
            out.append(bytes(buf))
        elif kind == 2:  # byte overwrite
            buf = bytearray(data)
            buf[rng.randrange(len(buf))] = rng.randrange(256)
            out.append(bytes(buf))
        else:  # plain garbage
            out.append(rng.randbytes(rng.randrange(1, 64)))
    return out


def test_truncated_and_corrupted_payloads_raise_only_decode_errors() -> None:
    rng = random.Random(20240601)
    data = rich_payload()
    failures = 0
    for sample in mutations(data, rng, 600):
        try:
            json.dumps(decode_payload(sample))  # if it parses, the result must be JSON-able
        except SparkplugDecodeError as exc:
            assert str(exc)
            failures += 1
    assert failures > 50  # the corpus really exercises the error paths


def test_corrupted_payloads_through_the_session() -> None:
    rng = random.Random(7)
    session = SparkplugSession()
    session.handle(topic("NBIRTH"), nbirth())
    session.handle(topic("DBIRTH", D), dbirth(1))
    data = ddata(2, (10, 1.0, "Double"), (11, 4, "Int16"), (12, "x", "String"))
    outcomes = {"event": 0, "error": 0}
    for sample in mutations(data, rng, 300):
        try:
            session.handle(topic("DDATA", D), sample)
            outcomes["event"] += 1
        except SparkplugDecodeError:
            outcomes["error"] += 1
    assert outcomes["event"] and outcomes["error"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x12\x04\x0a\x02\xff\xfe", "UTF-8"),  # metric name with invalid UTF-8
        (b"\x12\x10", "not a Sparkplug B payload"),  # length beyond the end
        (b"\xff\xff\xff", "not a Sparkplug B payload"),
    ],
)
def test_specific_malformed_payloads(data: bytes, message: str) -> None:
    with pytest.raises(SparkplugDecodeError, match=message):
        decode_payload(data)


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(SparkplugDecodeError, match="payload must be bytes"):
        decode_payload("text")  # type: ignore[arg-type]


def test_bad_packed_array_is_a_decode_error() -> None:
    payload = pb.Payload(timestamp=TS)
    payload.metrics.add(name="a", datatype=pb.DoubleArray, bytes_value=struct.pack("<d", 1) + b"x")
    with pytest.raises(SparkplugDecodeError, match="not a multiple of the 8-byte element"):
        decode_payload(payload.SerializeToString())
