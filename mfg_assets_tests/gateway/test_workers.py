"""`mfg gateway --workers N`: partitioning, and a real run against mosquitto."""

import orjson
import polars as pl
import pytest

from mfg_assets.gateway.workers import partition_key, worker_index
from mfg_assets.lake.registry import table
from mfg_assets.uns import sparkplug
from mfg_assets_tests.gateway.harness import (
    T0,
    bronze_rows,
    connect_client,
    publish_all,
    sensor_messages,
    start_gateway,
    stop,
    wait_for,
    wait_online,
)


def test_an_edge_node_and_its_devices_share_one_partition():
    node_topics = [
        "spBv1.0/detroit/NBIRTH/press1-gw",
        "spBv1.0/detroit/NDATA/press1-gw",
        "spBv1.0/detroit/DBIRTH/press1-gw/press-01",
        "spBv1.0/detroit/DDATA/press1-gw/press-02",
        "spBv1.0/detroit/NCMD/press1-gw",
    ]
    assert {partition_key(t) for t in node_topics} == {"spBv1.0/detroit/press1-gw"}
    assert len({worker_index(t, 4) for t in node_topics}) == 1
    assert partition_key("spBv1.0/detroit/DDATA/press2-gw/press-01") != partition_key(
        node_topics[0]
    )
    assert partition_key("spBv1.0/STATE/gw-1") == partition_key("spBv1.0/STATE/gw-2")
    json_topic = "acme/detroit/body/weld1/cell01/weld-01/sensors"
    assert partition_key(json_topic) == json_topic
    # the same key always picks the same worker (stable across processes: crc32, not hash())
    assert worker_index(json_topic, 3) == worker_index(json_topic, 3)


def _edge_node(node: str, data: int) -> list[tuple[str, bytes]]:
    nbirth = sparkplug.encode_payload(T0, 0, [{"name": "bdSeq", "value": 0, "datatype": "Int64"}])
    dbirth = sparkplug.encode_payload(
        T0,
        1,
        [
            {"name": "force_kN", "alias": 1, "value": 0.0, "datatype": "Double"},
            {"name": "stroke_mm", "alias": 2, "value": 0.0, "datatype": "Double"},
            {"name": "Properties/machine_type", "value": "press", "datatype": "String"},
        ],
    )
    messages = [
        (sparkplug.format_topic("NBIRTH", "detroit", node), nbirth),
        (sparkplug.format_topic("DBIRTH", "detroit", node, "press-01"), dbirth),
    ]
    ddata = sparkplug.format_topic("DDATA", "detroit", node, "press-01")
    for k in range(data):
        metrics = [
            {"alias": 1, "value": 100.0 + k, "datatype": "Double"},
            {"alias": 2, "value": float(k % 50), "datatype": "Double", "timestamp": T0 + k},
        ]
        payload = sparkplug.encode_payload(
            T0 + 1000 * (k + 1), (k + 2) % 256, metrics, include_datatypes=False
        )
        messages.append((ddata, payload))
    return messages


@pytest.mark.integration
def test_workers_land_every_message_once_with_sparkplug_state_per_edge_node(broker, lake, data_dir):
    gateway = start_gateway(broker.url, data_dir, "gw-workers", "--workers", "2")
    wait_online(broker.url, "gw-workers")
    nodes = [f"press{k}-gw" for k in range(4)]
    publisher = connect_client(broker.url, "workers-publisher")
    per_node = 300
    for node in nodes:
        publish_all(publisher, _edge_node(node, per_node))
    json_messages = sensor_messages(1000)
    publish_all(publisher, json_messages)
    # one refused data message: an alias no birth announced
    bad = sparkplug.encode_payload(
        T0,
        (per_node + 2) % 256,
        [{"alias": 9, "value": 1.0, "datatype": "Double"}],
        include_datatypes=False,
    )
    publish_all(
        publisher, [(sparkplug.format_topic("DDATA", "detroit", nodes[0], "press-01"), bad)]
    )
    expected = len(nodes) * per_node + len(json_messages)
    try:
        wait_for(lambda: bronze_rows(lake) >= expected, 90, f"{expected} bronze rows")
        wait_for(lambda: bronze_rows(lake, "bronze.quarantine") >= 1, 30, "the refused message")
    finally:
        assert stop(gateway) == 0
    bronze = lake.read(table("bronze.sensor_readings"))
    assert bronze.height == expected
    assert bronze.get_column("message_id").n_unique() == expected
    spb = bronze.filter(pl.col("channel") == "sparkplugDevice")
    assert spb.height == len(nodes) * per_node
    # every node's aliases were resolved by the worker that saw its births: no gaps, no
    # rebirth requests, sensor names from the DBIRTH
    sensors = {r["sensor"] for p in spb.get_column("payload") for r in orjson.loads(p)["readings"]}
    assert sensors == {"force_kN", "stroke_mm"}
    assert {orjson.loads(p)["machineType"] for p in spb.get_column("payload")} == {"press"}
    events = lake.read(table("bronze.device_events"))
    assert "REBIRTH_REQUEST" in events.get_column("event_type").to_list()  # the bad alias only
    assert events.filter(pl.col("event_type") == "REBIRTH_REQUEST").height == 1
    quarantine = lake.read(table("bronze.quarantine"))
    assert quarantine.height == 1
    assert "unknown alias 9" in quarantine.row(0, named=True)["reason"]
    # the births and the refused message were committed (and counted) too
    batches = lake.read(table("bronze.ingest_batches"))
    assert batches.get_column("messages").sum() >= expected + 1 + 2 * len(nodes)
