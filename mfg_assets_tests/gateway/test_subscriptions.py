"""Topics of any depth under the enterprise reach the router (issue 13, item 3)."""

from __future__ import annotations

import pytest

from mfg_assets.gateway.config import GatewayConfig
from mfg_assets.gateway.routing import Router
from mfg_assets.lake.registry import table
from mfg_assets.settings import DEFAULT_CONTRACT
from mfg_assets.uns.contract import load_contract
from mfg_assets.uns.topics import TopicError
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

PAYLOAD = sensor_messages(1)[0][1]
WRONG_DEPTH = [
    "acme",
    "acme/detroit/body/sensors",
    "acme/detroit/body/weld1/cell01/sensors",
    "acme/detroit/body/weld1/cell01/weld-01/extra/sensors",
    "acme/a/b/c/d/e/f/g/h/i/j/sensors",
]


def test_subscriptions_cover_every_depth_and_replicas_share_them():
    shared = GatewayConfig("mqtt://localhost:1883").subscriptions("acme")
    assert shared == ["$share/mfg-gateway/acme/#", "spBv1.0/#"]
    plain = GatewayConfig("mqtt://localhost:1883", share_group=None).subscriptions("plant-7")
    assert plain == ["plant-7/#", "spBv1.0/#"]
    with pytest.raises(TopicError):  # an enterprise can never widen the filter
        GatewayConfig("mqtt://localhost:1883").subscriptions("+")


@pytest.mark.parametrize(
    "bad",
    ["..", ".", "weld%2F01", "weld 01", "weld\x01"],
)
def test_contract_valid_topics_with_unsafe_segments_are_quarantined(bad):
    router = Router(load_contract(DEFAULT_CONTRACT), source="test")
    topic = f"acme/detroit/body/weld1/cell01/{bad}/sensors"
    assert not router.route(topic, PAYLOAD, T0)
    quarantine = router.take("b").tables["bronze.quarantine"]
    assert quarantine.get_column("reason_code").to_list() == ["bad_topic"]
    assert "not a valid UNS segment" in quarantine.item(0, "reason")


@pytest.mark.integration
def test_wrong_depth_topics_are_seen_and_quarantined_as_unknown_topic(broker, lake, data_dir):
    gateway = start_gateway(broker.url, data_dir, "gw-depth")
    publisher = connect_client(broker.url, "depth-publisher")
    try:
        wait_online(broker.url, "gw-depth")
        publish_all(publisher, [(topic, PAYLOAD) for topic in WRONG_DEPTH])
        publish_all(publisher, sensor_messages(3))
        wait_for(lambda: bronze_rows(lake) >= 3, 60, "valid messages")
        wait_for(
            lambda: bronze_rows(lake, "bronze.quarantine") >= len(WRONG_DEPTH), 30, "quarantine"
        )
        assert gateway.poll() is None
    finally:
        publisher.disconnect()
        assert stop(gateway) == 0
    quarantine = lake.read(table("bronze.quarantine"))
    assert sorted(quarantine.get_column("topic")) == sorted(WRONG_DEPTH)
    assert set(quarantine.get_column("reason_code")) == {"unknown_topic"}
