"""The router: validated messages become bronze rows, everything else quarantine rows."""

import base64

import orjson
import polars as pl
import pytest

from mfg_assets.gateway.routing import Router, message_id
from mfg_assets.gateway.routing import _error_family as _family
from mfg_assets.settings import DEFAULT_CONTRACT
from mfg_assets.uns import sparkplug
from mfg_assets.uns.contract import load_contract

T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z
SENSOR_TOPIC = "acme/detroit/body/weld1/cell01/weld-01/sensors"


@pytest.fixture(scope="module")
def contract():
    return load_contract(DEFAULT_CONTRACT)


def sensor_payload(ts: int = T0, value: object = 181.5) -> bytes:
    readings = [{"sensor": "current", "value": value, "unit": "A"}]
    return orjson.dumps({"timestamp": ts, "machineType": "welder", "readings": readings})


def test_valid_json_lands_in_its_bronze_table_with_isa95_place(contract):
    router = Router(contract, source="test")
    assert router.route(SENSOR_TOPIC, sensor_payload(), T0 + 5)
    batch = router.take("b1")
    rows = batch.tables["bronze.sensor_readings"]
    assert (batch.received, batch.valid, batch.invalid) == (1, 1, 0)
    row = rows.row(0, named=True)
    assert row["site"] == "detroit" and row["line"] == "weld1" and row["asset_id"] == "weld-01"
    assert row["channel"] == "sensorReadings" and row["ingest_batch_id"] == "b1"
    assert row["event_date"].isoformat() == "2026-11-01"
    assert orjson.loads(row["payload"])["readings"][0]["value"] == 181.5
    assert row["message_id"] == message_id(SENSOR_TOPIC, sensor_payload())


@pytest.mark.parametrize(
    ("topic", "payload", "code"),
    [
        ("acme/detroit/body/weld1/cell01/weld-01/smells", sensor_payload(), "unknown_topic"),
        (SENSOR_TOPIC, b'{"timestamp": 1, "readings": [', "bad_payload"),
        (SENSOR_TOPIC, sensor_payload(value="hot"), "schema"),
        (SENSOR_TOPIC, b"\xff\xfe\x00binary", "bad_payload"),
        ("spBv1.0/detroit/DDATA/press1-gw/press-01", b"\x08\xff\xff", "bad_payload"),
    ],
)
def test_bad_input_is_quarantined_with_a_coded_reason(contract, topic, payload, code):
    router = Router(contract, source="test")
    assert not router.route(topic, payload, T0)
    batch = router.take("b2")
    assert set(batch.tables) == {"bronze.quarantine", "bronze.validation_results"}
    row = batch.tables["bronze.quarantine"].row(0, named=True)
    compliance = batch.tables["bronze.validation_results"].row(0, named=True)
    assert (compliance["received"], compliance["valid"], compliance["invalid"]) == (1, 0, 1)
    assert orjson.loads(compliance["top_errors"]) == {_family(row["reason"]): 1}
    assert row["reason_code"] == code
    assert row["reason"].startswith(code)
    assert row["topic"] == topic
    # the payload is kept: as text when it is text, else losslessly as base64
    kept = row["payload"]
    if kept.startswith("base64:"):
        assert base64.b64decode(kept.removeprefix("base64:")) == payload
    else:
        assert kept.encode() == payload
    assert (batch.received, batch.valid, batch.invalid) == (1, 0, 1)


def _birth_and_data(value: float, seq_data: int = 2) -> list[tuple[str, bytes]]:
    node, device = "press1-gw", "press-01"
    nbirth = sparkplug.encode_payload(
        T0,
        0,
        [
            {"name": "bdSeq", "value": 0, "datatype": "Int64"},
            {"name": "Node Control/Rebirth", "value": False, "datatype": "Boolean"},
        ],
    )
    dbirth = sparkplug.encode_payload(
        T0,
        1,
        [
            {"name": "vibration_rms", "alias": 1, "value": 2.0, "datatype": "Double"},
            {"name": "Properties/line", "value": "press1", "datatype": "String"},
            {"name": "Properties/machine_type", "value": "press", "datatype": "String"},
        ],
    )
    ddata = sparkplug.encode_payload(
        T0 + 1000,
        seq_data,
        [{"alias": 1, "value": value, "datatype": "Double"}],
        include_datatypes=False,
    )
    return [
        (sparkplug.format_topic("NBIRTH", "detroit", node), nbirth),
        (sparkplug.format_topic("DBIRTH", "detroit", node, device), dbirth),
        (sparkplug.format_topic("DDATA", "detroit", node, device), ddata),
    ]


def test_sparkplug_data_resolves_aliases_into_sensor_rows(contract):
    router = Router(contract, source="test")
    for topic, payload in _birth_and_data(3.25):
        assert router.route(topic, payload, T0)
    batch = router.take("b3")
    events = batch.tables["bronze.device_events"].get_column("event_type").to_list()
    assert events == ["NBIRTH", "DBIRTH"]
    row = batch.tables["bronze.sensor_readings"].row(0, named=True)
    assert (row["site"], row["line"], row["asset_id"]) == ("detroit", "press1", "press-01")
    doc = orjson.loads(row["payload"])
    assert doc["machineType"] == "press"
    assert doc["readings"] == [{"sensor": "vibration_rms", "value": 3.25}]


def test_sparkplug_seq_gap_requests_rebirth_and_keeps_the_data(contract):
    router = Router(contract, source="test")
    for topic, payload in _birth_and_data(3.25, seq_data=7):
        router.route(topic, payload, T0)
    batch = router.take("b4")
    assert router.rebirth_requests and router.rebirth_requests[0][:2] == ("detroit", "press1-gw")
    assert "REBIRTH_REQUEST" in batch.tables["bronze.device_events"]["event_type"].to_list()
    quarantined = batch.tables["bronze.quarantine"]
    assert quarantined.height == 1
    assert quarantined.filter(pl.col("reason").str.contains("rebirth")).height == 1


def test_compliance_is_counted_per_channel_and_minute(contract):
    router = Router(contract, source="test")
    for k in range(5):
        router.route(SENSOR_TOPIC, sensor_payload(ts=T0 + k), T0 + k * 20_000)  # 0..80 s
    router.route(SENSOR_TOPIC, sensor_payload(value="x"), T0 + 1000)
    router.route("acme/x/y", b"{}", T0 + 1000)
    frame = router.take("b5").tables["bronze.validation_results"].sort("minute", "channel")
    rows = [(r["channel"], r["received"], r["valid"], r["invalid"]) for r in frame.to_dicts()]
    assert rows == [
        ("(unmatched)", 1, 0, 1),
        ("sensorReadings", 4, 3, 1),
        ("sensorReadings", 2, 2, 0),
    ]
