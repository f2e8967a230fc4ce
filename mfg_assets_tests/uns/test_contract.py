"""Tests for mfg_assets.uns.contract (AsyncAPI 2.6 / 3.0 -> compiled MQTT validator)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from mfg_assets.uns.contract import (
    Contract,
    ContractError,
    is_json_content_type,
    load_contract,
    register_decoder,
    unregister_decoder,
)

FIXTURES = Path(__file__).parent / "fixtures"
TELEMETRY = "plant/hamburg/line/L1/machine/M001/telemetry"
READING = {"ts": "2024-05-01T12:00:00Z", "readings": [{"name": "temp", "value": 21.5}]}
SPARKPLUG = "application/vnd.sparkplug-b+protobuf"


@pytest.fixture(scope="module")
def v2() -> Contract:
    return load_contract(FIXTURES / "factory_v2.yaml")


@pytest.fixture(scope="module")
def v3() -> Contract:
    return load_contract(FIXTURES / "factory_v3.yaml")


def js(obj: object) -> bytes:
    return orjson.dumps(obj)


def codes(errors: list[str]) -> list[str]:
    return [e.split(":", 1)[0] for e in errors]


# -- topic matching ---------------------------------------------------------------------------


def test_match_extracts_parameters(v2: Contract) -> None:
    channel, params = v2.match(TELEMETRY)
    assert channel.address == "plant/{site}/line/{line}/machine/{machineId}/telemetry"
    assert params == {"site": "hamburg", "line": "L1", "machineId": "M001"}


def test_literal_address_beats_parameterized(v2: Contract) -> None:
    assert v2.match("plant/hamburg/status")[0].address == "plant/hamburg/status"
    channel, params = v2.match("plant/lyon/status")
    assert channel.address == "plant/{site}/status"
    assert params == {"site": "lyon"}


@pytest.mark.parametrize(
    "topic",
    [
        "plant/paris/line/L1/machine/M001/telemetry",  # site enum (via components $ref)
        "plant/hamburg/line/L9/machine/M001/telemetry",  # line enum
        "plant/hamburg/line/L1/machine/X1/telemetry",  # machineId pattern
        "plant//bom",  # a parameter never matches an empty level
        "plant/a/b/bom",  # ... nor spans several levels
        "plant/hamburg/line/L1/machine/M001/telemetry/extra",
    ],
)
def test_topics_that_do_not_match(v2: Contract, topic: str) -> None:
    assert v2.match(topic) is None
    result = v2.check(topic, b"{}")
    assert codes(result.errors) == ["unknown_topic"]
    assert result.channel is None


def test_parameter_enum_rejection_says_why(v2: Contract) -> None:
    (error,) = v2.check("plant/hamburg/line/L9/machine/M001/telemetry", js(READING)).errors
    assert error.startswith(
        "unknown_topic: no channel in contract 'Factory UNS v1.2.0' matches topic "
        "'plant/hamburg/line/L9/machine/M001/telemetry'"
    )
    assert "parameter line='L9' must be one of ['L1', 'L2', 'L3']" in error


def test_unknown_topic_message(v2: Contract) -> None:
    channel, message, errors = v2.validate("a/b/c", b"{}")
    assert (channel, message) == (None, None)
    assert errors == [
        "unknown_topic: no channel in contract 'Factory UNS v1.2.0' matches topic 'a/b/c'"
    ]


def test_cache_never_returns_stale_results() -> None:
    contract = load_contract(FIXTURES / "factory_v2.yaml", cache_size=2)
    topics = [
        f"plant/{site}/line/{line}/machine/M00{n}/telemetry"
        for site in ("hamburg", "lyon")
        for line in ("L1", "L2")
        for n in range(3)
    ]
    for _ in range(3):  # several rounds so that hits, misses and evictions all happen
        for topic in topics:
            _, params = contract.match(topic)
            assert (
                f"plant/{params['site']}/line/{params['line']}/machine/"
                f"{params['machineId']}/telemetry" == topic
            )
        assert contract.match("plant/paris/line/L1/machine/M001/telemetry") is None
    # Mutating a returned params dict must not poison the cache.
    contract.match(TELEMETRY)[1]["site"] = "poisoned"
    assert contract.match(TELEMETRY)[1]["site"] == "hamburg"
    assert contract.check(TELEMETRY, js(READING), {"source": "plc"}).params["site"] == "hamburg"


# -- the error kinds --------------------------------------------------------------------------


def test_valid_payload(v2: Contract) -> None:
    result = v2.check(TELEMETRY, js(READING), headers={"source": "plc"})
    assert result.ok
    assert result.errors == []
    assert result.message == "SensorReading"
    assert result.document == READING
    assert result.params["machineId"] == "M001"


def test_bad_json_reports_byte_offset(v2: Contract) -> None:
    # "é" is two bytes: the offset counts bytes (17), not characters (16).
    _, _, errors = v2.validate("plant/lyon/bom", b'{"partNo": "\xc3\xa9", oops}')
    assert errors == [
        "bad_payload: invalid JSON at byte 17: unexpected character, expected a string key"
    ]
    assert v2.validate("plant/lyon/bom", "")[2][0].startswith("bad_payload: invalid JSON at byte 0")


def test_schema_error_names_message_and_path(v2: Contract) -> None:
    bad = {"ts": "2024-05-01T12:00:00Z", "readings": [{"name": "temp", "value": "hot"}]}
    result = v2.check(TELEMETRY, js(bad))
    assert "schema: SensorReading: data.readings[0].value must be number" in result.errors
    assert set(codes(result.errors)) == {"schema"}


def test_bad_header(v2: Contract) -> None:
    result = v2.check(TELEMETRY, js(READING), headers={"seq": "3"})
    assert result.errors == [
        "bad_header: SensorReading: headers must contain ['source'] properties",
        "schema: MachineState: data must contain ['state'] properties",
    ]
    # Headers may also come as MQTT v5 (key, value) pairs.
    result = v2.check(TELEMETRY, js(READING), headers=[("source", "plc"), ("seq", "-1")])
    assert (
        result.errors[0]
        == "bad_header: SensorReading: headers.seq must be bigger than or equal to 0"
    )


def test_header_strings_are_coerced_like_user_properties(v2: Contract) -> None:
    # MQTT v5 user properties are always strings; "7" satisfies {type: integer}.
    assert v2.check(TELEMETRY, js(READING), headers={"source": "plc", "seq": "7"}).ok


def test_headers_not_checked_when_not_given(v2: Contract) -> None:
    assert v2.check(TELEMETRY, js(READING)).ok


def test_too_large() -> None:
    contract = load_contract(FIXTURES / "factory_v2.yaml", max_payload_bytes=16)
    result = contract.check("plant/lyon/bom", js({"partNo": "x" * 20}))
    assert result.errors == ["too_large: payload of 33 bytes exceeds the 16-byte limit"]
    assert result.channel is not None


def test_default_size_limit_is_one_mebibyte(v2: Contract) -> None:
    big = js({"partNo": "x" * (1 << 20)})
    (error,) = v2.validate("plant/lyon/bom", big)[2]
    assert error == f"too_large: payload of {len(big)} bytes exceeds the 1048576-byte limit"


# -- messages, traits, refs -------------------------------------------------------------------


def test_multi_message_channel_picks_the_matching_message(v2: Contract) -> None:
    assert v2.validate(TELEMETRY, js({"state": "IDLE"}))[1:] == ("MachineState", [])
    assert v2.validate(TELEMETRY, js(READING))[1:] == ("SensorReading", [])
    _, message, errors = v2.validate(TELEMETRY, js({"state": "ON_FIRE"}))
    assert message is None  # several candidates, none matched
    assert errors == [
        "schema: SensorReading: data must contain ['readings', 'ts'] properties",
        "schema: MachineState: data.state must be one of ['RUNNING', 'IDLE', 'DOWN']",
    ]


def test_traits_apply_content_type_and_headers(v2: Contract) -> None:
    channel, _ = v2.match(TELEMETRY)
    reading = channel.messages[0]
    assert reading.content_type == "application/vnd.factory+json"  # from the trait
    assert reading.headers_schema["required"] == ["source"]  # from the trait
    assert is_json_content_type(reading.content_type)
    # A trait making the content type text/plain: no decoder, so the payload is not checked.
    result = v2.check("plant/lyon/text", b"just some words")
    assert result.ok and result.message == "Note" and result.document is None
    assert result.content_type == "text/plain"


def test_asyncapi_only_keywords_are_dropped(v2: Contract) -> None:
    schema = v2.match(TELEMETRY)[0].messages[0].payload_schema
    assert "discriminator" not in schema and "externalDocs" not in schema


def test_message_name_fallbacks(v2: Contract, v3: Contract) -> None:
    assert v2.validate("plant/lyon/status", b'{"up": true}')[1] == "siteStatus"  # messageId
    assert v2.validate("plant/hamburg/status", b'{"up": true, "hamburgOnly": 1}')[1] == "message1"
    assert v3.validate("plant/lyon/machine/M7/telemetry", b'{"alive": true}')[1] == "heartbeat"


def test_external_relative_refs_and_recursion_across_files(v2: Contract) -> None:
    ok = {"code": "E1", "severity": "high", "cause": {"code": "E0", "severity": "low"}}
    assert v2.validate("plant/lyon/alarms", js(ok))[1:] == ("Alarm", [])
    bad = {"code": "E1", "severity": "high", "cause": {"code": "E0", "severity": "meh"}}
    assert v2.validate("plant/lyon/alarms", js(bad))[2] == [
        "schema: Alarm: data.cause.severity must be one of ['low', 'high', 'critical']"
    ]


def test_recursive_schema(v2: Contract) -> None:
    def tree(depth: int) -> dict:
        return {"partNo": f"p{depth}", "children": [tree(depth - 1)] if depth else []}

    assert v2.validate("plant/lyon/bom", js(tree(30)))[2] == []
    broken = tree(2)
    broken["children"][0]["children"][0]["partNo"] = 7
    assert v2.validate("plant/lyon/bom", js(broken))[2] == [
        "schema: Bom: data.children[0].children[0].partNo must be string"
    ]


@pytest.mark.parametrize("convert", [bytes, bytearray, memoryview, lambda b: b.decode()])
def test_bytes_and_str_payloads_agree(v2: Contract, convert) -> None:
    good = js({"partNo": "Zahnrad-ä"})
    bad = js({"partNo": 5})
    assert v2.validate("plant/lyon/bom", convert(good))[2] == []
    errors = v2.validate("plant/lyon/bom", convert(bad))[2]
    assert errors == ["schema: Bom: data.partNo must be string"]


def test_dict_source_with_base_uri_for_external_refs() -> None:
    import yaml

    doc = yaml.safe_load((FIXTURES / "factory_v2.yaml").read_text())
    contract = load_contract(doc, base_uri=(FIXTURES / "factory_v2.yaml").as_uri())
    assert contract.validate("plant/lyon/alarms", b'{"code": "x", "severity": "low"}')[2] == []
    assert doc["channels"]["plant/{site}/alarms"]["subscribe"]["message"] == {
        "$ref": "schemas/common.yaml#/messages/Alarm"
    }  # the caller's dict is not modified


def test_broken_documents_raise_contract_error(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="version"):
        load_contract({"asyncapi": "1.2.0", "channels": {}})
    doc = {
        "asyncapi": "2.6.0",
        "info": {"title": "t", "version": "1"},
        "channels": {"a": {"publish": {"message": {"payload": {"$ref": "missing.yaml#/X"}}}}},
    }
    with pytest.raises(ContractError, match=r"missing\.yaml"):
        load_contract(doc, base_uri=tmp_path.as_uri() + "/")
    with pytest.raises(ContractError, match="cannot read"):
        load_contract(tmp_path / "nope.yaml")


# -- AsyncAPI 3.0 -----------------------------------------------------------------------------


def test_v3_address_parameters_and_trait_headers(v3: Contract) -> None:
    topic = "plant/lyon/machine/M9/telemetry"
    result = v3.check(topic, b'{"value": 1.5}', headers={"correlation": "abc", "priority": "3"})
    assert (result.channel.id, result.message, result.errors) == ("telemetry", "SensorReading", [])
    assert result.params == {"site": "lyon", "machineId": "M9"}
    result = v3.check(topic, b'{"value": 1.5}', headers={"correlation": "abc", "priority": "12"})
    assert "bad_header: SensorReading: headers.priority must be smaller than or equal to 9" in (
        result.errors
    )
    # 3.x parameter enum given directly on the parameter object.
    assert v3.match("plant/paris/machine/M9/telemetry") is None


def test_v3_multi_format_schemas(v3: Contract) -> None:
    assert v3.validate("plant/lyon/events", b'{"kind": "start"}')[1:] == ("event", [])
    assert v3.validate("plant/lyon/events", b'{"kind": 1}')[2] == [
        "schema: event: data.kind must be string"
    ]
    # Avro is not supported: payload unchecked, and the contract says so.
    assert v3.validate("plant/lyon/frames", b"\x00\x01binary")[2] == []
    assert any("avro" in w and "not schema-checked" in w for w in v3.warnings)
    frame = v3.match("plant/lyon/frames")[0].messages[0]
    assert frame.checked is False and frame.payload_schema is None


def test_v3_null_address_is_skipped(v3: Contract) -> None:
    assert "dynamic" not in [c.id for c in v3.channels]
    assert any("'dynamic' has no address" in w for w in v3.warnings)


def test_channel_descriptors(v3: Contract) -> None:
    telemetry = next(c for c in v3.channels if c.id == "telemetry")
    assert telemetry.address == "plant/{site}/machine/{machineId}/telemetry"
    assert [m.name for m in telemetry.messages] == ["SensorReading", "heartbeat"]
    assert telemetry.parameters == {"site": {"enum": ["hamburg", "lyon"]}, "machineId": {}}
    assert telemetry.messages[0].payload_schema == {
        "type": "object",
        "required": ["value"],
        "properties": {"value": {"type": "number"}},
    }


# -- decoders ---------------------------------------------------------------------------------


def fake_sparkplug(data: bytes) -> dict:
    """Stands in for the real protobuf codec: 'name=value;...' -> a Sparkplug-like document."""
    if not data:
        raise ValueError("empty Sparkplug payload")
    metrics = [
        dict(zip(("name", "value"), kv.split("="), strict=True)) for kv in data.decode().split(";")
    ]
    return {"metrics": metrics}


def test_unknown_binary_content_type_is_accepted_unchecked(
    v3: Contract, monkeypatch: pytest.MonkeyPatch
) -> None:
    # other tests in the process may have registered the real Sparkplug codec: not here
    from mfg_assets.uns.contract import decoders

    monkeypatch.delitem(decoders._DECODERS, SPARKPLUG, raising=False)
    result = v3.check("spBv1.0/g1/NDATA/edge1", b"\x08\x01")
    assert result.ok and result.document is None
    assert result.content_type == SPARKPLUG


def test_registered_decoder_is_used_even_after_loading(v3: Contract) -> None:
    register_decoder(SPARKPLUG, fake_sparkplug)
    try:
        result = v3.check("spBv1.0/g1/NDATA/edge1", b"temp=21;rpm=900")
        assert result.ok and result.message == "NDATA"
        assert result.document["metrics"][1] == {"name": "rpm", "value": "900"}
        assert v3.validate("spBv1.0/g1/NDATA/edge1", b"")[2] == [
            "bad_payload: ValueError: empty Sparkplug payload"
        ]
    finally:
        unregister_decoder(SPARKPLUG)
    assert v3.check("spBv1.0/g1/NDATA/edge1", b"").document is None  # back to unchecked


def test_per_contract_decoders() -> None:
    contract = load_contract(FIXTURES / "factory_v3.yaml", decoders={SPARKPLUG: lambda _: {}})
    assert contract.validate("spBv1.0/g/NDATA/e", b"x")[2] == [
        "schema: NDATA: data must contain ['metrics'] properties"
    ]


# -- third-party style documents --------------------------------------------------------------

MEASURED = "smartylighting/streetlights/1/0/event/{id}/lighting/measured"
TURN_ON = "smartylighting/streetlights/1/0/action/{id}/turn/on"
DIM = "smartylighting/streetlights/1/0/action/{id}/dim"


@pytest.mark.parametrize("name", ["streetlights_v2.yaml", "streetlights_v3.json"])
def test_streetlights_style_documents(name: str) -> None:
    contract = load_contract(FIXTURES / name)
    assert contract.name == "Streetlights MQTT API v1.0.0"
    assert contract.warnings == []
    assert len(contract.channels) == 4

    measured = MEASURED.format(id="lamp-42")
    channel, message, errors = contract.validate(
        measured, b'{"lumens": 420, "sentAt": "2024-05-01T12:00:00Z"}', {"my-app-header": "50"}
    )
    assert (channel.address, message, errors) == (
        MEASURED.replace("{id}", "{streetlightId}"),
        "lightMeasured",
        [],
    )
    assert contract.match(measured)[1] == {"streetlightId": "lamp-42"}
    assert contract.validate(measured, b'{"lumens": -1}')[2] == [
        "schema: lightMeasured: data.lumens must be bigger than or equal to 0"
    ]
    assert contract.validate(measured, b"{}", {"my-app-header": "500"})[2] == [
        "bad_header: lightMeasured: headers.my-app-header must be smaller than or equal to 100"
    ]
    # `on` stays a string even though YAML 1.1 would read it as a boolean.
    assert contract.validate(TURN_ON.format(id="7"), b'{"command": "on"}')[1:] == ("turnOnOff", [])
    assert codes(contract.validate(DIM.format(id="7"), b'{"percentage": 150}')[2]) == ["schema"]
    assert codes(contract.validate("smartylighting/streetlights/1/0/event/7", b"{}")[2]) == [
        "unknown_topic"
    ]
