"""Hot swap on a real broker: a steady image stream, a new assignment midway, no loss."""

from __future__ import annotations

import threading
import time

import orjson
import pytest

from mfg_assets.edge.store import BundleStore
from mfg_assets.settings import DEFAULT_CONTRACT
from mfg_assets.uns.contract import load_contract
from mfg_assets_tests.edge.helpers import inspection_messages, runtime
from mfg_assets_tests.gateway.harness import connect_client, wait_for

pytestmark = pytest.mark.integration

N = 300
SWAP_AT = 60


def test_hot_swap_under_a_steady_stream_loses_nothing(broker, make_vision_bundle, keys, tmp_path):
    contract = load_contract(DEFAULT_CONTRACT)
    store = BundleStore(tmp_path / "store")
    old, new = make_vision_bundle(version=1), make_vision_bundle(version=2)
    for bundle in (old, new):
        store.publish(bundle.path)
    store.assign("edge-cam01", old.bundle_id)
    edge = runtime(tmp_path, store, keys[1], broker_url=broker.url, poll_s=0.05,
                   heartbeat_s=0.5)
    predictions: list[tuple[str, bytes]] = []
    telemetry: list[tuple[str, bytes]] = []
    listener = connect_client(broker.url, "test-listener")
    listener.on_message = lambda c, u, m: (
        predictions if m.topic.endswith("/predictions") else telemetry
    ).append((m.topic, m.payload))
    listener.subscribe([("acme/+/+/+/+/edge-cam01/predictions", 1),
                        ("acme/+/+/+/+/edge-cam01/telemetry", 1)])
    messages = inspection_messages(N)
    publisher = connect_client(broker.url, "test-camera")
    edge.start()
    try:
        edge.wait_online(30)

        def stream() -> None:  # one image every 5 ms; the new bundle is assigned midway
            for k, (topic, payload) in enumerate(messages):
                if k == SWAP_AT:
                    store.assign("edge-cam01", new.bundle_id, reason="hot swap test")
                publisher.publish(topic, payload, qos=1)
                time.sleep(0.005)

        sender = threading.Thread(target=stream)
        sender.start()
        sender.join(60)
        wait_for(lambda: len(predictions) >= N, 60, f"{N} predictions")
        wait_for(lambda: any(orjson.loads(p).get("bundleId") == new.bundle_id
                             for _, p in telemetry), 10, "a heartbeat from the new bundle")
    finally:
        edge.stop()
        for client in (listener, publisher):
            client.loop_stop()
            client.disconnect()

    docs = [orjson.loads(payload) for _, payload in predictions]
    assert len(docs) == N
    assert sorted(d["sourceId"] for d in docs) == sorted(orjson.loads(p)["imageId"]
                                                         for _, p in messages)
    bundles = [d["bundleId"] for d in docs]
    swap = bundles.index(new.bundle_id)
    assert 0 < swap < N, "the swap happened inside the stream"
    assert bundles[:swap] == [old.bundle_id] * swap  # old until the swap, new after it
    assert bundles[swap:] == [new.bundle_id] * (N - swap)
    assert edge.stats.swaps == 1 and edge.stats.failed == 0
    for topic, payload in predictions + telemetry:
        assert contract.validate(topic, payload)[2] == [], payload[:200]
