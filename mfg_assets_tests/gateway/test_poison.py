"""One message the lake cannot hold, or one batch it refuses, never stops ingest (issue 13).

The poison timestamps here are valid under a contract without timestamp bounds: the gateway
must check what the lake can represent itself, not rely on the contract to refuse them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
import yaml
from deltalake import write_deltalake

from mfg_assets.gateway.commit import WriteFailed, commit_items
from mfg_assets.gateway.replay import write_batch
from mfg_assets.gateway.routing import LAKE_MAX_MS, Router
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import table
from mfg_assets.settings import DEFAULT_CONTRACT
from mfg_assets.uns import sparkplug
from mfg_assets.uns.contract import Contract, load_contract
from mfg_assets_tests.brokers import free_port
from mfg_assets_tests.gateway.harness import (
    T0,
    bronze_rows,
    connect_client,
    publish_all,
    scrape,
    sensor_messages,
    start_gateway,
    stop,
    wait_for,
    wait_online,
    webhook_inbox,
)

TOPIC = "acme/detroit/body/weld1/cell01/weld-01/sensors"
POISON = [2**64 - 1, 2**63 - 1, 2**62, 10**16, LAKE_MAX_MS + 1, -1, 2**64 + 5]


def unbounded_contract_doc() -> dict:
    """The plant contract with no bounds on timestamps (any integer is contract-valid)."""
    doc = yaml.safe_load(DEFAULT_CONTRACT.read_text())
    schema = doc["components"]["schemas"]["timestamp"]
    schema.pop("minimum", None)
    schema.pop("maximum", None)
    return doc


@pytest.fixture(scope="module")
def unbounded() -> Contract:
    return load_contract(unbounded_contract_doc(), base_uri=DEFAULT_CONTRACT.resolve().as_uri())


def poison_payload(timestamp: int) -> bytes:
    # orjson cannot write integers beyond 64 bits; the text is what a device would send
    rest = b'"machineType": "welder", "readings": [{"sensor": "a", "value": 1}]'
    return b'{"timestamp": %d, %s}' % (timestamp, rest)


@pytest.mark.parametrize("timestamp", POISON)
def test_unrepresentable_timestamp_is_quarantined_and_the_batch_commits(unbounded, lake, timestamp):
    router = Router(unbounded, source="test")
    assert unbounded.check(TOPIC, poison_payload(timestamp)).ok or timestamp > 2**64
    router.route(TOPIC, poison_payload(timestamp), T0)
    for topic, payload in sensor_messages(10):
        router.route(topic, payload, T0)
    batch = router.take("b1")
    assert (batch.valid, batch.invalid) == (10, 1)
    write_batch(lake, batch)
    bronze = lake.read(table("bronze.sensor_readings"))
    assert bronze.height == 10
    assert bronze.get_column("event_date").dt.year().min() == 2026  # nothing landed as 1969
    quarantine = lake.read(table("bronze.quarantine"))
    (row,) = quarantine.to_dicts()
    assert row["reason_code"] == "unrepresentable"
    assert "column timestamp" in row["reason"]
    assert str(timestamp) in row["reason"] or timestamp > 2**64  # read as a float beyond
    assert row["payload"] == poison_payload(timestamp).decode()


def test_sparkplug_timestamps_the_lake_cannot_hold_are_quarantined(unbounded):
    router = Router(unbounded, source="test")
    group, node = "detroit", "press1-gw"
    nbirth = sparkplug.encode_payload(T0, 0, [{"name": "bdSeq", "value": 0, "datatype": "Int64"}])
    router.route(sparkplug.format_topic("NBIRTH", group, node), nbirth, T0)
    metric = {"name": "temp", "value": 1.0, "datatype": "Double"}
    stamped = {**metric, "timestamp": 2**64 - 1}
    messages = [
        sparkplug.encode_payload(2**64 - 1, 1, [metric]),  # the message's own timestamp
        sparkplug.encode_payload(T0, 2, [stamped]),  # one metric's timestamp
        sparkplug.encode_payload(T0, 3, [metric]),
    ]
    landed = [router.route(sparkplug.format_topic("NDATA", group, node), m, T0) for m in messages]
    batch = router.take("b1")
    assert landed == [False, False, True]
    reasons = batch.tables["bronze.quarantine"].get_column("reason").to_list()
    assert all(r.startswith("unrepresentable: column ") for r in reasons), reasons
    assert batch.tables["bronze.sensor_readings"].height == 1


def _break_table(lake: Lake, name: str, column: str = "message_id") -> None:
    """A real Delta table in the way, whose schema no append of ours can merge into."""
    write_deltalake(lake.uri(table(name)), pa.table({column: pa.array([1], pa.int64())}))


def test_a_batch_the_lake_refuses_is_quarantined_as_write_failed_after_bounded_retries(
    lake, caplog, monkeypatch
):
    contract = load_contract(DEFAULT_CONTRACT)
    router = Router(contract, source="test")
    _break_table(lake, "bronze.sensor_readings")
    items = [(t, p, k, 1, T0) for k, (t, p) in enumerate(sensor_messages(5))]
    failures: list[int] = []
    with webhook_inbox() as (url, alerts), caplog.at_level(logging.ERROR, logger="mfg.gateway"):
        monkeypatch.setenv("MFG_ALERT_WEBHOOK_URL", url)
        done = commit_items(
            router,
            lake,
            items,
            retries=2,
            stopping=lambda: False,
            on_failure=lambda: failures.append(1),
            backoff_s=0.01,
        )
    assert len(failures) == 3 == done.write_failures  # first try + 2 retries, then no more
    assert done.write_failed == 5 and done.invalid == 5 and done.valid == 0
    assert sorted(done.acks) == [(k, 1) for k in range(5)]  # acknowledged: no redelivery loop
    quarantine = lake.read(table("bronze.quarantine"))
    assert quarantine.height == 5
    assert set(quarantine.get_column("reason_code")) == {"write_failed"}
    assert quarantine.get_column("reason").str.contains("after 3 attempts").all()
    assert any("ALERT" in r.message and r.levelno == logging.ERROR for r in caplog.records)
    (alert,) = alerts  # one alert for the batch, posted to the webhook
    assert alert["kind"] == "gateway_write_failed" and alert["quarantined"] is True
    assert (alert["messages"], alert["attempts"]) == (5, 3)
    assert alert["topics"] == [TOPIC] and alert["error"]


def test_a_batch_whose_quarantine_fails_too_still_alerts_and_is_not_acknowledged(lake, monkeypatch):
    router = Router(load_contract(DEFAULT_CONTRACT), source="test")
    _break_table(lake, "bronze.sensor_readings")
    _break_table(lake, "bronze.quarantine", "quarantine_id")
    items = [(t, p, k, 1, T0) for k, (t, p) in enumerate(sensor_messages(3))]
    with webhook_inbox() as (url, alerts):
        monkeypatch.setenv("MFG_ALERT_WEBHOOK_URL", url)
        with pytest.raises(WriteFailed):  # nothing acknowledged: the broker redelivers
            commit_items(router, lake, items, retries=1, stopping=lambda: False, backoff_s=0.01)
    (alert,) = alerts
    assert alert["quarantined"] is False and alert["messages"] == 3


@pytest.mark.integration
def test_a_gateway_whose_lake_refuses_a_batch_alerts_and_counts_it(
    broker, lake, data_dir, monkeypatch
):
    """The real gateway: one alert on the webhook, and its /metrics say how many writes
    failed (first try + 5 retries) and how many messages were quarantined as write_failed."""
    _break_table(lake, "bronze.sensor_readings")
    port = free_port()
    with webhook_inbox() as (url, alerts):
        monkeypatch.setenv("MFG_ALERT_WEBHOOK_URL", url)  # the gateway inherits it
        gateway = start_gateway(broker.url, data_dir, "gw-refused", "--metrics-port", str(port))
        publisher = connect_client(broker.url, "refused-publisher")
        try:
            wait_online(broker.url, "gw-refused")
            publish_all(publisher, sensor_messages(5))
            # 5 retries, backoff 0.5 s doubling: ~16 s until the messages are quarantined
            wait_for(lambda: len(alerts) >= 1, 60, "the write_failed alert")
            wait_for(lambda: bronze_rows(lake, "bronze.quarantine") >= 5, 30, "quarantined")
            time.sleep(1.0)  # the counters are updated after the commit
            metrics = scrape(port)
            assert gateway.poll() is None, "gateway died"
        finally:
            publisher.disconnect()
            assert stop(gateway) == 0
    (alert,) = alerts
    assert alert["kind"] == "gateway_write_failed" and alert["quarantined"] is True
    quarantine = lake.read(table("bronze.quarantine"))
    failed = quarantine.filter(quarantine["reason_code"] == "write_failed")
    assert failed.filter(failed["topic"] == TOPIC).height == 5
    # (the gateway's own STATE message may share the refused batch: counted the same)
    assert metrics["mfg_gateway_messages_write_failed_total"] == failed.height == alert["messages"]
    assert metrics["mfg_gateway_write_failures_total"] == 6 == alert["attempts"]


@pytest.mark.integration
def test_poison_then_ten_valid_messages_on_a_real_broker(broker, lake, data_dir, tmp_path: Path):
    contract = tmp_path / "unbounded.yaml"
    contract.write_text(yaml.safe_dump(unbounded_contract_doc()))
    gateway = start_gateway(broker.url, data_dir, "gw-poison", "--contract", str(contract))
    publisher = connect_client(broker.url, "poison-publisher")
    try:
        wait_online(broker.url, "gw-poison")
        publish_all(publisher, [(TOPIC, poison_payload(2**64 - 1))])
        publish_all(publisher, sensor_messages(10))
        wait_for(lambda: bronze_rows(lake) >= 10, 60, "ten valid messages in bronze")
        wait_for(lambda: bronze_rows(lake, "bronze.quarantine") >= 1, 30, "the poison quarantined")
        assert gateway.poll() is None, "gateway died"
    finally:
        publisher.disconnect()
        assert stop(gateway) == 0
    quarantine = lake.read(table("bronze.quarantine"))
    (row,) = quarantine.filter(quarantine["topic"] == TOPIC).to_dicts()
    assert row["reason_code"] == "unrepresentable" and str(2**64 - 1) in row["reason"]
    assert bronze_rows(lake) == 10
    assert orjson.loads(row["payload"])["machineType"] == "welder"
