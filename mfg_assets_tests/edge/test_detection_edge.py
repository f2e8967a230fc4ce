"""A part detection bundle, prepared the way the platform prepares it, served by the edge:
an assembly camera's boards in, ``ok`` / ``missing_part`` with the empty slots and the boxes
found out, on the contract's EdgePrediction channel."""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest

from mfg_assets.edge import detection as post
from mfg_assets.edge.bundle import build_bundle
from mfg_assets.edge.store import BundleStore, Device
from mfg_assets.fleet.bundles import BundleSettings, EdgeProfile, _prepare_detection
from mfg_assets.ml import detection
from mfg_assets.settings import DEFAULT_CONTRACT
from mfg_assets.sim import assemblies
from mfg_assets.sim.images import encode_png
from mfg_assets.sim.rng import rng_for
from mfg_assets.uns.contract import load_contract
from mfg_assets_tests.edge.helpers import PLACE, T0, runtime
from mfg_assets_tests.ml.detection_model import small_boards, small_detector

TOPIC = "acme/detroit/assembly/final1/inspect01/asm-cam01/inspection"


class _Registry:
    """The one call _prepare_detection makes of the MLflow registry: load the champion."""

    def load(self, module, champion, path):
        trained = small_detector()
        detection.save(trained, path)
        return module.load(path)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prepare")
    profile = EdgeProfile("edge-asm01", "assembly", PLACE, ("asm-cam01",), "registration")
    return _prepare_detection(_Registry(), detection, None, small_boards(), profile, tmp,
                              BundleSettings())


def _message(k: int, pixels: np.ndarray) -> tuple[str, bytes]:
    doc = {"timestamp": T0 + k, "imageId": f"board-{k}", "width": 64, "height": 64,
           "encoding": "png", "data": base64.b64encode(encode_png(pixels)).decode()}
    return TOPIC, orjson.dumps(doc)


def test_prepared_bundle_is_fp32_with_layout_and_its_own_threshold(prepared):
    export, preprocessing, threshold, notes = prepared
    assert export.precision == "fp32" and "int8 not tried" in notes[0]
    assert preprocessing["output"] == "detections" and preprocessing["image_size"] == 64
    assert len(preprocessing["layout"]) == len(assemblies.LAYOUT)
    assert 0.0 < threshold["value"] < 0.9 and "complete assemblies of asm-cam01" in threshold[
        "source"]


def test_assembly_edge_reports_the_missing_part_with_boxes(prepared, keys, tmp_path):
    export, preprocessing, threshold, _ = prepared
    bundle = build_bundle(
        tmp_path / "bundle", edge_id="edge-asm01", model_file=export.path,
        preprocessing=preprocessing, threshold=threshold, model_name="part_detection",
        model_version=1, lineage={"delta_versions": {"features.assembly_images": 0}},
        export=export.manifest_entry(), private_key=keys[0])
    store = BundleStore(tmp_path / "store")
    store.publish(bundle.path)
    store.assign("edge-asm01", bundle.bundle_id)
    device = Device("edge-asm01", "assembly", PLACE, (TOPIC,))
    edge = runtime(tmp_path, store, keys[1], device=device)
    assert edge.refresh()

    contract = load_contract(DEFAULT_CONTRACT)
    slot = 2  # the capacitor
    results = {}
    for k in range(6):
        complete = assemblies.render_assembly(rng_for(9, "edge", k), 64, force_missing=(99,))
        holed = assemblies.render_assembly(rng_for(9, "edge", k), 64, force_missing=(slot,))
        for name, board in (("complete", complete), ("holed", holed)):
            [(topic, payload)] = edge.handle(*_message(k, board.pixels))
            channel, _, errors = contract.validate(topic, payload)
            assert errors == [] and channel.id == "edgePredictions"
            results.setdefault(name, []).append(orjson.loads(payload))
    said_ok = [d["value"] == "ok" for d in results["complete"]]
    assert sum(said_ok) >= 5, results["complete"]
    cls = assemblies.LAYOUT[slot][0]
    for doc in results["holed"]:
        assert doc["value"] == "missing_part" and doc["score"] > doc["threshold"]
        assert cls in [m["cls"] for m in doc["detections"]["missing"]]
        assert doc["model"] == "part_detection" and doc["bundleId"] == bundle.bundle_id
    # the boxes found on a complete board are the parts that are there
    found = results["complete"][0]["detections"]["found"]
    truth = assemblies.render_assembly(rng_for(9, "edge", 0), 64, force_missing=(99,)).boxes
    ious = detection.iou(np.array([f["box"] for f in found]), np.array([b[1:] for b in truth]))
    assert (ious.max(axis=0) >= 0.5).sum() >= len(truth) - 1


def test_slot_decisions_follow_the_threshold():
    layout = [{"cls": "a", "cx": 10, "cy": 10, "radius": 3},
              {"cls": "b", "cx": 30, "cy": 10, "radius": 3}]
    dets = np.array([[0.9, 0, 8, 8, 12, 12],  # a, in its slot
                     [0.6, 1, 40, 8, 44, 12],  # b, far from its slot
                     [0.0, 0, 0, 0, 0, 0]])
    out = post.decide(dets, ["a", "b"], layout, threshold=0.5, box_score=0.5)
    assert [m["cls"] for m in out["missing"]] == ["b"] and out["score"] == pytest.approx(1.0)
    assert [f["cls"] for f in out["found"]] == ["a", "b"]
    near = dets.copy()
    near[1, 2:] = [28, 8, 32, 12]  # b moved into its slot with score 0.6: abnormality 0.4
    assert post.decide(near, ["a", "b"], layout, 0.5, 0.5)["missing"] == []
    assert [m["cls"] for m in post.decide(near, ["a", "b"], layout, 0.3, 0.5)["missing"]] == ["b"]
