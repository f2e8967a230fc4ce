"""Property-based: the router and the gateway never stop on what the contract's own schemas
(and their extreme neighbours) can produce (issue 13, item 2)."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

import polars as pl
import psutil
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from mfg_assets.gateway.routing import DEFAULT_CHANNEL_TABLES, Router
from mfg_assets.lake.registry import table
from mfg_assets.lake.silver import refine, type_sensor_readings
from mfg_assets_tests.gateway.harness import (
    T0,
    connect_client,
    publish_all,
    start_gateway,
    stop,
    wait_for,
    wait_online,
)
from mfg_assets_tests.gateway.payloads import (
    CONTRACT,
    Message,
    families,
    identity,
    quarantine_identity,
)

# every table a message lands in as data (JSON channels, Sparkplug DATA, Sparkplug events)
DATA_TABLES = {*DEFAULT_CHANNEL_TABLES.values(), "bronze.device_events"}
ROUTER_MESSAGES = int(os.environ.get("MFG_PROPERTY_MESSAGES", "6000"))  # make test
ROUTER_MESSAGES_SLOW = 60_000
SEED = 20261101


def generate(count: int, strategy, name: str) -> list[list[Message]]:
    """Families drawn until they hold at least ``count`` messages. Seeded: hypothesis with
    a fixed seed per round and no example database, so every run routes the same ones."""
    found: list[list[Message]] = []
    total = 0

    def draw(data: st.DataObject) -> None:
        nonlocal total
        family = data.draw(strategy(f"{name}{len(found)}-"))
        found.append(family)
        total += len(family)

    for round_ in range(1000):
        if total >= count:
            break
        run = settings(
            max_examples=max(10, (count - total) // 20),  # families hold ~20 messages
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )(seed(SEED + round_)(given(st.data())(draw)))
        run()
    return found


def row_identities(tables: dict[str, pl.DataFrame]) -> tuple[Counter[str], Counter[str]]:
    """(identities of data rows, identities of quarantine rows) in ``tables``."""
    data: Counter[str] = Counter()
    for name in DATA_TABLES & set(tables):
        frame = tables[name]
        if name == "bronze.device_events":  # a rebirth request is the gateway's, not a landing
            frame = frame.filter(pl.col("event_type") != "REBIRTH_REQUEST")
        data.update(frame.get_column("message_id").to_list())
    quarantined: Counter[str] = Counter()
    if "bronze.quarantine" in tables:
        frame = tables["bronze.quarantine"]
        assert frame.get_column("reason").str.len_chars().min() > 0  # a reason each
        codes = set(frame.get_column("reason_code"))
        assert "internal" not in codes, frame.filter(pl.col("reason_code") == "internal").rows()
        quarantined.update(
            quarantine_identity(topic, kept)
            for topic, kept in frame.select("topic", "payload").iter_rows()
        )
    return data, quarantined


def route_family(router: Router, family: list[Message]) -> None:
    """Route ``family`` as one batch; each message is exactly one bronze/device-event row
    (when route() said it landed) or one quarantine row with a reason (when it did not)."""
    landed: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    for k, (topic, payload, kind) in enumerate(family):
        ok = router.route(topic, payload, T0 + k)  # never raises
        (landed if ok else refused)[identity(topic, payload)] += 1
        if kind in ("odd_segment", "wrong_depth"):
            assert not ok, (topic, kind)
        if kind == "raw":
            assert not ok or payload.startswith(b"{"), (topic, payload[:80])
    batch = router.take("property")  # every row converts to its table's schema
    data, quarantined = row_identities(batch.tables)
    assert data == landed and quarantined == refused, (family, data, quarantined)
    for name in DATA_TABLES & set(batch.tables):
        years = batch.tables[name].get_column("event_date").dt.year()
        assert years.min() >= 1970 and years.max() <= 9999  # nothing wrapped around


def route_generated(count: int) -> int:
    router = Router(CONTRACT, source="property")
    routed = 0
    for family in generate(count, families, f"r{count}-"):
        route_family(router, family)
        routed += len(family)
    return routed


def test_router_turns_every_message_into_one_bronze_or_quarantine_row():
    # ~6,000 messages (JSON channels and Sparkplug B) from the contract's schemas, seeded;
    # ~33 s here on a busy 2-core machine (generation is most of it)
    assert route_generated(ROUTER_MESSAGES) >= ROUTER_MESSAGES


@pytest.mark.slow
def test_router_turns_sixty_thousand_messages_into_one_row_each():
    assert route_generated(ROUTER_MESSAGES_SLOW) >= ROUTER_MESSAGES_SLOW


GATEWAY_MESSAGES = 2000


def distinct_generated(count: int) -> list[Message]:
    """At least ``count`` distinct generated messages (JSON and Sparkplug B), seeded."""
    found: dict[str, Message] = {}
    for family in generate(count + 100, families, "g"):
        for topic, payload, kind in family:
            found.setdefault(identity(topic, payload), (topic, payload, kind))
    assert len(found) >= count, len(found)
    return list(found.values())


def lake_identities(lake) -> tuple[Counter[str], Counter[str]]:
    tables = {
        name: lake.read(table(name))
        for name in (*DATA_TABLES, "bronze.quarantine")
        if lake.exists(table(name))
    }
    return row_identities(tables)


@pytest.mark.integration  # ~26 s here (2,000+ messages); part of make test (issue 13)
def test_gateway_on_a_real_broker_lands_each_generated_message_once(broker, lake, data_dir):
    generated = distinct_generated(GATEWAY_MESSAGES)
    expected = Counter(identity(topic, payload) for topic, payload, _ in generated)
    assert len(expected) == len(generated) >= GATEWAY_MESSAGES
    sparkplug_share = sum(topic.startswith("spBv1.0/") for topic, _, _ in generated)
    assert sparkplug_share >= 150, sparkplug_share  # a share of them Sparkplug B
    gateway = start_gateway(broker.url, data_dir, "gw-prop", "--batch-interval", "0.5")
    publisher = connect_client(broker.url, "prop-publisher")
    process = psutil.Process(gateway.pid)
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.05)

    def handled() -> int:
        data, quarantined = lake_identities(lake)
        return sum(min(1, data[k] + quarantined[k]) for k in expected)

    try:
        wait_online(broker.url, "gw-prop")
        baseline = process.memory_info().rss
        sampler = threading.Thread(target=sample)
        sampler.start()
        publish_all(publisher, [(topic, payload) for topic, payload, _ in generated])
        wait_for(lambda: handled() >= len(expected), 90, "every message landed or quarantined")
        time.sleep(1.0)  # a message landing twice would show up now
        assert gateway.poll() is None, "gateway died"
    finally:
        done.set()
        publisher.disconnect()
        assert stop(gateway) == 0
    assert peak[0] - baseline < 300 * 1024 * 1024, (baseline, peak[0])  # bounded memory
    data, quarantined = lake_identities(lake)  # (reasons checked there)
    # each exactly once: as data or quarantined (rows of the gateway's own STATE and rebirth
    # commands, which it hears too, are no generated message's)
    assert {k: data[k] + quarantined[k] for k in expected} == dict(expected)
    assert sum(quarantined[k] for k in expected) > 0 and sum(data[k] for k in expected) > 0
    # bronze -> silver with the production function: every reading once, or refused with why
    bronze = lake.read(table("bronze.sensor_readings"))
    typed = type_sensor_readings(bronze)
    refined = refine(table("silver.sensor_readings"), typed, run_id="property")
    # each reading once in silver, refused with a reason, or an exact repeat of a reading
    # of the same message (a generated message may repeat a sensor): nothing vanishes
    assert refined.valid.height + refined.rejected.height + refined.duplicates == typed.height
    key = list(table("silver.sensor_readings").key)
    assert refined.valid.select(key).n_unique() == refined.valid.height
    if refined.rejected.height:
        assert refined.rejected.get_column("reason").str.len_chars().min() > 0
    assert refined.valid.select(pl.len()).item() > 0
