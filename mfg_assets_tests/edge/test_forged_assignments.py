"""Forged assignments and booby-trapped bundles: refused, nothing outside the cache touched,
and the edge keeps polling and heartbeating.

The assignment file is written by hand (not through ``BundleStore.assign``), as a forger
with write access to the store would.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mfg_assets.edge.bundle import BundleError, check_bundle_id, verify_bundle
from mfg_assets.edge.store import BundleStore
from mfg_assets_tests.edge.helpers import inspection_messages, runtime
from mfg_assets_tests.gateway.harness import connect_client, wait_for

EDGE = "edge-cam01"


def forge(store_root: Path, bundle_id: object, edge_id: str = EDGE) -> None:
    path = store_root / "assignments" / f"{edge_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"edge_id": edge_id, "bundle_id": bundle_id}))


def victim_tree(root: Path) -> Path:
    """A folder beside the edge's cache that a forged id tries to reach."""
    victim = root / "victim"
    (victim / "inner").mkdir(parents=True)
    (victim / "inner" / "precious.txt").write_text("keep me")
    return victim


def path_ids(root: Path, victim: Path) -> list[str]:
    cache = root / "edge-cache" / "bundles"
    return [
        str(victim),  # absolute
        "..", ".", "", "../../victim", "../victim", "../../victim/inner",
        os.path.relpath(victim, cache), "bundles/../../victim", "./../../victim",
        f"{victim}/", "..\\..\\victim",
    ]


# Hostile id strings: path-like pieces, separators, dots, NUL, unicode, long.
hostile_ids = st.one_of(
    st.sampled_from(["", ".", "..", "...", "/", "\x00", "a\x00b", "a" * 129, "é" * 10,
                     "bündle", "a/b", "a\\b", "-rf", ".hidden", "../", "\u202e..", " "]),
    st.lists(st.sampled_from(["..", ".", "victim", "inner", "", "x"]), min_size=1, max_size=6)
    .map("/".join),
    st.text(min_size=0, max_size=300),
    st.text(alphabet="./\\\x00é-_ab", min_size=0, max_size=40),
    st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
)


@pytest.mark.parametrize("index", range(12))
def test_path_like_bundle_ids_never_touch_anything_outside_the_cache(index, keys, tmp_path):
    victim = victim_tree(tmp_path)
    bundle_id = path_ids(tmp_path, victim)[index]
    store = BundleStore(tmp_path / "store")
    edge = runtime(tmp_path, store, keys[1])
    (tmp_path / "edge-cache" / "bundles").mkdir(parents=True)
    forge(tmp_path / "store", bundle_id)
    for _ in range(3):  # polled again and again: refused, never raises
        assert edge.refresh() is False
    assert (victim / "inner" / "precious.txt").read_text() == "keep me"
    assert (tmp_path / "edge-cache" / "bundles").is_dir()  # "" and "." must not wipe it
    assert edge.active is None
    doc = orjson.loads(edge.telemetry_payload())
    refusals = [line for line in doc["logs"] if line["level"] == "ERROR"]
    assert len(refusals) == 1 and "refused" in refusals[0]["message"]  # once, not every poll


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bundle_id=hostile_ids)
def test_hostile_ids_are_refused_and_polling_goes_on(bundle_id, keys, make_vision_bundle):
    good = make_vision_bundle()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        victim = victim_tree(root)
        store = BundleStore(root / "store")
        store.publish(good.path)
        edge = runtime(root, store, keys[1])
        forge(root / "store", bundle_id)
        assert edge.refresh() is False
        assert edge.refresh() is False
        assert (victim / "inner" / "precious.txt").read_text() == "keep me"
        assert sorted(p.name for p in root.iterdir()) == ["edge-cache", "store", "victim"] or \
            sorted(p.name for p in root.iterdir()) == ["store", "victim"]
        # the next honest assignment is still followed
        store.assign(EDGE, good.bundle_id)
        assert edge.refresh() is True and edge.active.bundle_id == good.bundle_id


@given(bundle_id=hostile_ids)
def test_check_bundle_id_accepts_only_plain_names(bundle_id):
    try:
        checked = check_bundle_id(bundle_id)
    except BundleError:
        return
    assert checked == bundle_id and "/" not in checked and "\\" not in checked
    assert checked.strip(".") and checked.isascii() and len(checked) <= 128


@pytest.mark.parametrize("bad", [None, 7, ["a"], {"x": 1}, True])
def test_non_string_bundle_ids_are_refused(bad, keys, tmp_path):
    store = BundleStore(tmp_path / "store")
    edge = runtime(tmp_path, store, keys[1])
    forge(tmp_path / "store", bad)
    assert edge.refresh() is False and edge.active is None


def test_an_assignment_naming_another_bundles_folder_is_refused(
    make_vision_bundle, keys, tmp_path
):
    """A signed bundle copied under another id (a valid id, a real folder) does not run:
    the signed manifest must name the bundle the assignment names."""
    bundle = make_vision_bundle()
    store = BundleStore(tmp_path / "store")
    store.publish(bundle.path)
    alias = tmp_path / "store" / "bundles" / "vision_defect-v9-edge-cam01-ffffffffffff"
    alias.mkdir()
    for f in (tmp_path / "store" / "bundles" / bundle.bundle_id).iterdir():
        (alias / f.name).write_bytes(f.read_bytes())
    forge(tmp_path / "store", alias.name)
    edge = runtime(tmp_path, store, keys[1])
    assert edge.refresh() is False and edge.active is None
    assert "names bundle" in edge.stats.refused[alias.name]
    assert not (tmp_path / "edge-cache" / "bundles" / alias.name).exists()


def test_a_missing_bundle_is_refused_not_raised(keys, tmp_path):
    store = BundleStore(tmp_path / "store")
    edge = runtime(tmp_path, store, keys[1])
    forge(tmp_path / "store", "vision_defect-v1-edge-cam01-000000000000")
    assert edge.refresh() is False
    assert "not in the store" in next(iter(edge.stats.refused.values()))


# -- symlinks, hard links, special files ------------------------------------------------------


@pytest.mark.parametrize("trick", ["symlink", "hardlink", "fifo"])
def test_a_bundle_with_links_or_special_files_is_refused(trick, make_vision_bundle, keys,
                                                         tmp_path):
    bundle = make_vision_bundle()
    outside = tmp_path / "outside.onnx"
    model = bundle.path / "model.onnx"
    outside.write_bytes(model.read_bytes())  # same bytes: the checksum alone would pass
    if trick == "symlink":
        model.unlink()
        model.symlink_to(outside)
        expected = "not a regular file"
    elif trick == "hardlink":
        model.unlink()
        os.link(outside, model)
        expected = "hard link"
    else:
        os.mkfifo(bundle.path / "preprocessing.json.fifo")
        expected = "not a regular file"
    with pytest.raises(BundleError, match=expected):
        verify_bundle(bundle.path, keys[1])


def test_a_symlinked_file_in_the_store_is_refused_and_its_target_kept(
    make_vision_bundle, keys, tmp_path
):
    bundle = make_vision_bundle()
    store = BundleStore(tmp_path / "store")
    store.publish(bundle.path)
    stored = tmp_path / "store" / "bundles" / bundle.bundle_id
    outside = tmp_path / "outside.onnx"
    outside.write_bytes((stored / "model.onnx").read_bytes())
    (stored / "model.onnx").unlink()
    (stored / "model.onnx").symlink_to(outside)
    store.assign(EDGE, bundle.bundle_id)
    edge = runtime(tmp_path, store, keys[1])
    assert edge.refresh() is False and edge.active is None
    assert "not a regular file" in edge.stats.refused[bundle.bundle_id]
    assert outside.exists()


def test_a_symlinked_bundle_folder_in_the_cache_is_refused_and_its_target_kept(
    make_vision_bundle, keys, tmp_path
):
    bundle = make_vision_bundle()
    store = BundleStore(tmp_path / "store")
    store.publish(bundle.path)
    store.assign(EDGE, bundle.bundle_id)
    victim = victim_tree(tmp_path)
    cache = tmp_path / "edge-cache" / "bundles"
    cache.mkdir(parents=True)
    (cache / bundle.bundle_id).symlink_to(victim, target_is_directory=True)
    edge = runtime(tmp_path, store, keys[1])
    assert edge.refresh() is False
    assert (victim / "inner" / "precious.txt").read_text() == "keep me"


# -- on a real broker: heartbeats and polling go on under a forged assignment ----------------


@pytest.mark.integration
def test_the_edge_keeps_heartbeating_and_polling_under_a_forged_assignment(
    broker, make_vision_bundle, keys, tmp_path
):
    victim = victim_tree(tmp_path)
    good = make_vision_bundle()
    store = BundleStore(tmp_path / "store")
    store.publish(good.path)
    forge(tmp_path / "store", "../../victim")
    edge = runtime(tmp_path, store, keys[1], broker_url=broker.url, poll_s=0.05,
                   heartbeat_s=0.2)
    heartbeats: list[dict] = []
    predictions: list[dict] = []
    lock = threading.Lock()

    def on_message(client, userdata, message) -> None:
        with lock:
            target = heartbeats if message.topic.endswith("/telemetry") else predictions
            target.append(orjson.loads(message.payload))

    listener = connect_client(broker.url, "forged-listener")
    listener.on_message = on_message
    listener.subscribe([(f"acme/+/+/+/+/{EDGE}/telemetry", 1),
                        (f"acme/+/+/+/+/{EDGE}/predictions", 1)])
    edge.start()
    try:
        edge.wait_online(15)
        wait_for(lambda: len(heartbeats) >= 3, 15, "three heartbeats under a forged assignment")
        assert any("refused" in line["message"] for hb in heartbeats for line in hb["logs"])
        store.assign(EDGE, good.bundle_id)  # polling goes on: the honest assignment is taken up
        wait_for(lambda: edge.active is not None, 15, "the honest bundle to become active")
        publisher = connect_client(broker.url, "forged-publisher")
        for topic, payload in inspection_messages(2):
            publisher.publish(topic, payload, qos=1).wait_for_publish(5)
        wait_for(lambda: len(predictions) >= 2, 15, "predictions after the honest assignment")
        publisher.loop_stop()
    finally:
        edge.stop(10)
        listener.loop_stop()
    assert {p["bundleId"] for p in predictions} == {good.bundle_id}
    assert (victim / "inner" / "precious.txt").read_text() == "keep me"
