"""The gateway service against a real mosquitto (each test starts its own broker)."""

import random
import threading
import time

import orjson
import psutil
import pytest

from mfg_assets.lake.registry import table
from mfg_assets.uns import sparkplug
from mfg_assets_tests.gateway.harness import (
    T0,
    bronze_rows,
    connect_client,
    publish_all,
    sensor_messages,
    silver_sensor_rows,
    start_gateway,
    stop,
    wait_for,
    wait_online,
)

pytestmark = pytest.mark.integration


def test_sparkplug_birth_data_death_and_rebirth_on_seq_gap(broker, lake, data_dir):
    gateway = start_gateway(broker.url, data_dir, "gw-spb")
    commands: list[tuple[str, dict]] = []
    listener = connect_client(broker.url, "listener")
    listener.on_message = lambda c, u, m: commands.append(
        (m.topic, sparkplug.decode_payload(m.payload))
    )
    listener.subscribe("spBv1.0/+/NCMD/+", qos=1)
    node, device = "press1-gw", "press-01"
    birth = [
        (
            sparkplug.format_topic("NBIRTH", "detroit", node),
            sparkplug.encode_payload(T0, 0, [{"name": "bdSeq", "value": 3, "datatype": "Int64"}]),
        ),
        (
            sparkplug.format_topic("DBIRTH", "detroit", node, device),
            sparkplug.encode_payload(
                T0,
                1,
                [
                    {"name": "vibration_rms", "alias": 7, "value": 1.0, "datatype": "Double"},
                    {"name": "Properties/line", "value": "press1", "datatype": "String"},
                ],
            ),
        ),
    ]
    data = [
        (
            sparkplug.format_topic("DDATA", "detroit", node, device),
            sparkplug.encode_payload(
                T0 + k * 1000,
                2 + k,
                [{"alias": 7, "value": 1.0 + k, "datatype": "Double"}],
                include_datatypes=False,
            ),
        )
        for k in range(5)
    ]
    gap = (
        data[0][0],
        sparkplug.encode_payload(
            T0 + 9000,
            42,
            [{"alias": 7, "value": 9.0, "datatype": "Double"}],
            include_datatypes=False,
        ),
    )
    death = (
        sparkplug.format_topic("NDEATH", "detroit", node),
        sparkplug.encode_payload(
            T0 + 10_000, None, [{"name": "bdSeq", "value": 3, "datatype": "Int64"}]
        ),
    )
    publisher = connect_client(broker.url, "edge-node")
    wait_online(broker.url, "gw-spb")
    publish_all(publisher, [*birth, *data, gap, death])
    try:
        wait_for(lambda: bronze_rows(lake, "bronze.device_events") >= 4, 30, "device events")
        wait_for(lambda: bool(commands), 10, "a rebirth NCMD")
    finally:
        assert stop(gateway) == 0
    values = sorted(row["value"] for row in silver_sensor_rows(lake).to_dicts())
    assert values == [1.0, 2.0, 3.0, 4.0, 5.0]  # aliases resolved; the gap's data quarantined
    events = lake.read(table("bronze.device_events")).get_column("event_type").to_list()
    # the gateway hears its own STATE and rebirth command too: both are part of the record
    assert sorted(set(events)) == ["DBIRTH", "NBIRTH", "NCMD", "NDEATH", "REBIRTH_REQUEST", "STATE"]
    topic, command = commands[0]
    assert topic == "spBv1.0/detroit/NCMD/press1-gw"
    assert command["metrics"][0]["name"] == "Node Control/Rebirth"
    assert command["metrics"][0]["value"] is True
    reasons = lake.read(table("bronze.quarantine")).get_column("reason").to_list()
    assert len(reasons) == 1 and "seq" in reasons[0]


def malformed_messages(n: int, seed: int = 5) -> list[tuple[str, bytes, str]]:
    """(topic, payload, expected reason code) of every kind the gateway must refuse."""
    rng = random.Random(seed)
    sensor_topic = "acme/detroit/body/weld1/cell01/weld-01/sensors"
    good = sparkplug.encode_payload(T0, 1, [{"alias": 1, "value": 1.0, "datatype": "Double"}])
    kinds = [
        lambda k: (
            sensor_topic,
            b'{"timestamp": 1, "readings": [' + str(k).encode(),
            "bad_payload",
        ),
        lambda k: (
            sensor_topic,
            orjson.dumps(
                {
                    "timestamp": T0,
                    "machineType": "welder",
                    "readings": [{"sensor": "a", "value": "x"}],
                }
            ),
            "schema",
        ),
        lambda k: (sensor_topic, orjson.dumps({"timestamp": -k, "machineType": 5}), "schema"),
        # UNS-shaped (so the gateway's subscription receives it) but no channel of the contract
        lambda k: (f"acme/detroit/body/weld1/cell01/weld-{k}/smells", b"{}", "unknown_topic"),
        # a truncated protobuf either fails to decode or decodes to data without a birth
        lambda k: (
            "spBv1.0/detroit/DDATA/press1-gw/press-01",
            good[: rng.randrange(1, len(good) - 1)] + b"\xff\xff",
            "bad_payload|sparkplug",
        ),
        lambda k: (sensor_topic, b"x" * (1_048_577 + k), "too_large"),
    ]
    # one in 500 is oversize (20 x 1 MiB in all); the rest cycle through the other kinds
    return [kinds[5](k) if k % 500 == 0 else kinds[k % 5](k) for k in range(n)]


def test_ten_thousand_malformed_messages_all_quarantined_gateway_alive(broker, lake, data_dir):
    gateway = start_gateway(broker.url, data_dir, "gw-bad")
    bad = malformed_messages(10_000)
    publisher = connect_client(broker.url, "bad-publisher")
    wait_online(broker.url, "gw-bad")
    process = psutil.Process(gateway.pid)
    peak = [0]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    baseline = process.memory_info().rss
    sampler.start()
    publish_all(publisher, [(topic, payload) for topic, payload, _ in bad])
    publish_all(publisher, sensor_messages(10))  # and good traffic still lands afterwards
    try:
        wait_for(lambda: bronze_rows(lake, "bronze.quarantine") >= len(bad), 120, "quarantine")
        wait_for(lambda: bronze_rows(lake) >= 10, 30, "good messages after the flood")
        assert gateway.poll() is None, "gateway died"
    finally:
        sampling.set()
        sampler.join()
        assert stop(gateway) == 0
    quarantine = lake.read(table("bronze.quarantine"))
    assert quarantine.height == len(bad)
    assert quarantine.get_column("topic").sort().to_list() == sorted(t for t, _, _ in bad)
    expected: dict[str, int] = {}
    for _, _, codes in bad:
        expected[codes] = expected.get(codes, 0) + 1
    counted = dict(quarantine.group_by("reason_code").len().iter_rows())
    sparkplug_rows = quarantine.filter(quarantine["topic"].str.starts_with("spBv1.0"))
    assert set(sparkplug_rows.get_column("reason_code")) <= {"bad_payload", "sparkplug"}
    assert sparkplug_rows.height == expected.pop("bad_payload|sparkplug")
    assert counted.get("sparkplug", 0) + counted["bad_payload"] == (
        sparkplug_rows.height + expected.pop("bad_payload")
    )
    assert {code: counted[code] for code in expected} == expected
    assert quarantine.get_column("reason").str.len_chars().min() > 10  # readable reasons
    oversize = quarantine.filter(quarantine["reason_code"] == "too_large")
    assert oversize.get_column("payload").str.starts_with("blob:").all()
    # memory stays bounded: no growth proportional to the 10,000 messages (~20 MB of oversize)
    assert peak[0] - baseline < 400 * 1024 * 1024, (baseline, peak[0])


def test_kill_minus_nine_mid_stream_then_restart_loses_nothing(broker, lake, data_dir):
    gateway = start_gateway(broker.url, data_dir, "gw-crash", "--batch-interval", "0.5")
    publisher = connect_client(broker.url, "crash-publisher")
    wait_online(broker.url, "gw-crash")
    messages = sensor_messages(6000)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (publish_all(publisher, messages), done.set()))
    thread.start()
    wait_for(lambda: bronze_rows(lake) > 0, 30, "first committed batch")
    gateway.kill()  # SIGKILL: no flush, no acks for what was in flight
    gateway.wait()
    thread.join(120)
    assert done.is_set()
    restarted = start_gateway(broker.url, data_dir, "gw-crash", log_name="gw-crash-2")
    try:
        wait_for(
            lambda: silver_sensor_rows(lake).height >= len(messages),
            120,
            "every message in silver after the restart",
        )
    finally:
        assert stop(restarted) == 0
    silver = silver_sensor_rows(lake)
    assert silver.height == len(messages)  # exactly once, after dedupe
    assert bronze_rows(lake) >= len(messages)  # at-least-once in bronze


def test_broker_restart_mid_stream_loses_nothing(broker, lake, data_dir):
    # A plain persistent subscription: mosquitto 2.0 restores sessions and their plain
    # subscriptions from its persistence file, but not shared ones, so messages published
    # after a broker restart and before the replicas resubscribe have no shared subscriber.
    gateway = start_gateway(broker.url, data_dir, "gw-restart", "--share-group", "")
    wait_online(broker.url, "gw-restart")
    first, second = sensor_messages(2000), sensor_messages(2000, start=2000)
    publisher = connect_client(broker.url, "restart-publisher-1")
    publish_all(publisher, first)
    publisher.disconnect()
    broker.restart(down_s=2.0)  # queued-but-undelivered messages survive in persistence
    publisher = connect_client(broker.url, "restart-publisher-2")
    publish_all(publisher, second)
    try:
        wait_for(lambda: silver_sensor_rows(lake).height >= 4000, 120, "all 4000 in silver")
        assert gateway.poll() is None
    finally:
        assert stop(gateway) == 0
    assert silver_sensor_rows(lake).height == 4000


def test_two_replicas_on_a_shared_subscription_land_each_message_once(broker, lake, data_dir):
    replicas = [start_gateway(broker.url, data_dir, f"gw-replica-{k}") for k in (1, 2)]
    wait_online(broker.url, "gw-replica-1", "gw-replica-2")
    publisher = connect_client(broker.url, "shared-publisher")
    messages = sensor_messages(4000)
    publish_all(publisher, messages)
    try:
        wait_for(lambda: bronze_rows(lake) >= len(messages), 60, "4000 bronze rows")
        time.sleep(1.5)  # anything landing twice would show up now
    finally:
        for proc in replicas:
            assert stop(proc) == 0
    bronze = lake.read(table("bronze.sensor_readings"))
    assert bronze.height == len(messages)
    assert bronze.get_column("message_id").n_unique() == len(messages)
    sources = dict(bronze.group_by("source").len().iter_rows())
    assert set(sources) == {"gateway:gw-replica-1", "gateway:gw-replica-2"}
    assert min(sources.values()) > len(messages) * 0.2  # both replicas took a real share


def test_two_replicas_each_see_a_sparkplug_nodes_whole_stream(broker, lake, data_dir):
    """Shared subscriptions would deal a node's BIRTH to one replica and its DATA to the
    other; Sparkplug filters stay unshared, so neither replica quarantines anything and
    silver holds every metric once."""
    replicas = [start_gateway(broker.url, data_dir, f"gw-spb-{k}") for k in (1, 2)]
    wait_online(broker.url, "gw-spb-1", "gw-spb-2")
    node, device, n = "press2-gw", "press-02", 200
    metrics = [{"name": f"m{i}", "alias": i, "value": 0.0, "datatype": "Double"}
               for i in range(1, 6)]
    messages = [
        (sparkplug.format_topic("NBIRTH", "detroit", node),
         sparkplug.encode_payload(T0, 0, [{"name": "bdSeq", "value": 1, "datatype": "Int64"}])),
        (sparkplug.format_topic("DBIRTH", "detroit", node, device),
         sparkplug.encode_payload(T0, 1, metrics)),
    ] + [
        (sparkplug.format_topic("DDATA", "detroit", node, device),
         sparkplug.encode_payload(
             T0 + (k + 1) * 1000, (2 + k) % 256,
             [{"alias": m["alias"], "value": float(k), "datatype": "Double"} for m in metrics],
             include_datatypes=False))
        for k in range(n)
    ]
    publisher = connect_client(broker.url, "spb-publisher")
    publish_all(publisher, messages)
    try:
        wait_for(lambda: bronze_rows(lake) >= 2 * n, 60, f"{2 * n} bronze rows")
        time.sleep(1.5)
    finally:
        for proc in replicas:
            assert stop(proc) == 0
    bronze = lake.read(table("bronze.sensor_readings"))
    assert set(bronze.get_column("source")) == {"gateway:gw-spb-1", "gateway:gw-spb-2"}
    assert bronze.get_column("message_id").n_unique() == n  # each DDATA, once per replica
    if lake.exists(table("bronze.quarantine")):
        assert lake.read(table("bronze.quarantine")).height == 0
    assert silver_sensor_rows(lake).height == n * len(metrics)  # deduplicated to once
