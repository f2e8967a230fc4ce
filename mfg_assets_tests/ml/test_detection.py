"""Part detection: the AP arithmetic, the layout, training from scratch, export with decode."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mfg_assets.edge.predictor import session
from mfg_assets.ml import detection, families
from mfg_assets.ml.base import read_info
from mfg_assets.sim import assemblies
from mfg_assets_tests.ml.detection_model import small_boards, small_detector

# -- average precision, by hand ----------------------------------------------------------------


def test_ap_of_known_rankings():
    truth = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)]
    perfect = [np.array([[0.9, 0, 0, 10, 10], [0.8, 20, 20, 30, 30]], float)]
    assert detection.average_precision(perfect, truth) == pytest.approx(1.0)
    # a false positive ranked first: precision 1/2 at recall 0.5 and 2/3 at recall 1; the
    # envelope takes the best precision at any higher recall, so 2/3 over the whole range
    fp_first = [np.array([[0.95, 50, 50, 60, 60], [0.9, 0, 0, 10, 10], [0.8, 20, 20, 30, 30]])]
    assert detection.average_precision(fp_first, truth) == pytest.approx(2 / 3)
    # ranked last instead, the false positive costs nothing
    fp_last = [np.array([[0.7, 50, 50, 60, 60], [0.9, 0, 0, 10, 10], [0.8, 20, 20, 30, 30]])]
    assert detection.average_precision(fp_last, truth) == pytest.approx(1.0)
    # between the two truths: 1 at recall 0.5, 2/3 at recall 1
    fp_mid = [np.array([[0.85, 50, 50, 60, 60], [0.9, 0, 0, 10, 10], [0.8, 20, 20, 30, 30]])]
    assert detection.average_precision(fp_mid, truth) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # a duplicate of one truth counts once; the other truth never found: recall stops at 0.5
    dup = [np.array([[0.9, 0, 0, 10, 10], [0.8, 0, 0, 10, 10]], float)]
    assert detection.average_precision(dup, truth) == pytest.approx(0.5)
    # IoU 0.47 < 0.5 is a miss
    shifted = [np.array([[0.9, 0, 0, 10, 10], [0.8, 24, 20, 34, 30]], float)]
    assert detection.iou(shifted[0][1:, 1:], truth[0][1:])[0, 0] < 0.5
    assert detection.average_precision(shifted, truth) == pytest.approx(0.5)
    assert math.isnan(detection.average_precision([np.zeros((0, 5))], [np.zeros((0, 4))]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 80), st.floats(0, 80), st.floats(2, 20), st.floats(2, 20),
                          st.floats(0.05, 1.0)), min_size=1, max_size=8))
def test_ap_is_one_for_exact_boxes_and_falls_with_a_confident_false_box(boxes):
    truth = [np.array([[x, y, x + w, y + h] for x, y, w, h, _ in boxes])]
    exact = [np.array([[s, x, y, x + w, y + h] for x, y, w, h, s in boxes])]
    assert detection.average_precision(exact, truth) == pytest.approx(1.0)
    far = np.array([[2.0, 500, 500, 510, 510]])  # above every score, overlapping nothing
    worse = detection.average_precision([np.vstack([far, exact[0]])], truth)
    assert worse < 1.0


def test_map_averages_over_present_classes():
    dets = np.zeros((1, 4, 6))
    dets[0, 0] = [0.9, 0, 0, 0, 10, 10]  # class 0 right
    dets[0, 1] = [0.8, 1, 50, 50, 60, 60]  # class 1 wrong place
    truth = [[("a", 0, 0, 10, 10), ("b", 20, 20, 30, 30)]]
    assert detection.mean_average_precision(dets, truth, ["a", "b", "c"]) == pytest.approx(0.5)


# -- layout ------------------------------------------------------------------------------------


def test_layout_learnt_from_complete_boards_matches_the_simulator():
    boards = assemblies.dataset(60, seed=3, size=96)
    layout = detection.learn_layout(boards, list(assemblies.CLASSES), 96)
    assert sorted(s["cls"] for s in layout) == sorted(c for c, _, _ in assemblies.LAYOUT)
    for cls, fx, fy in assemblies.LAYOUT:
        nearest = min((s for s in layout if s["cls"] == cls),
                      key=lambda s: math.hypot(s["cx"] - fx * 96, s["cy"] - fy * 96))
        assert math.hypot(nearest["cx"] - fx * 96, nearest["cy"] - fy * 96) < 3.0
    # without the 'missing' column (an import), complete boards are counted from the boxes
    unknown = boards.with_columns(missing=None)
    again = detection.learn_layout(unknown, list(assemblies.CLASSES), 96)
    assert [s["cls"] for s in again] == [s["cls"] for s in layout]


# -- training, metrics, persistence, export ----------------------------------------------------


def test_registry_entry_and_module_agree():
    module = families.family("part_detection")
    assert module is detection and families.spec("part_detection").edge_kind == "assembly"
    assert families.served_by("assembly") == "part_detection"


def test_small_detector_finds_parts_and_missing_slots():
    trained = small_detector()
    held = trained.holdout_metrics
    assert held["map50"] >= 0.3, held
    assert held["missing_recall"] >= 0.8 and held["missing_precision"] >= 0.6, held
    assert trained.info["classes"] == sorted(assemblies.CLASSES)
    assert detection.evaluate(trained.model, small_boards(), trained.info) == pytest.approx(held)


def test_an_untrained_detector_scores_far_lower():
    """The metric can fail: the same network before training finds (almost) nothing."""
    info = small_detector().info
    torch.manual_seed(0)
    untrained = detection.build(info).eval()
    metrics = detection.metrics_on(untrained, small_boards().filter(split="test"), info)
    assert metrics["map50"] < 0.05


def test_save_load_and_onnx_with_decode_match_torch(tmp_path):
    from mfg_assets.fleet.export import export_model

    trained = small_detector()
    detection.save(trained, tmp_path / "m")
    model, info = detection.load(tmp_path / "m")
    assert read_info(tmp_path / "m")[0]["layout"] == trained.info["layout"]
    png = small_boards().get_column("png").head(8).to_list()
    torch_out = detection.detect(model, png, info["image_size"])
    np.testing.assert_allclose(torch_out, detection.detect(trained.model, png,
                                                           info["image_size"]), atol=1e-6)
    x = detection.decode(png, info["image_size"])
    export = export_model(model, x[:1], tmp_path / "export")  # parity checked inside
    onnx_out = session(export.path).run(None, {"input": x})[0]
    assert onnx_out.shape == (8, info["top_k"], 6)
    confident = torch_out[:, :, 0] > 0.3  # ties among near-zero scores may order differently
    np.testing.assert_allclose(onnx_out[confident], torch_out[confident], atol=1e-3)


def test_boxes_column_is_what_the_simulator_wrote():
    boards = small_boards()
    first = boards.row(0, named=True)
    assert [list(b) for b in detection.parse_boxes(first["boxes"])] == json.loads(first["boxes"])


@pytest.mark.slow
def test_default_training_reaches_the_floor():
    """The family's own floor on full-size boards (minutes on two busy cores)."""
    boards = assemblies.dataset(400, seed=11)
    trained = detection.train(boards, {}, seed=0)
    assert detection.FAMILY.passes_floors(trained.holdout_metrics), trained.holdout_metrics
    assert trained.holdout_metrics["map50"] >= 0.5
    assert trained.holdout_metrics["missing_recall"] >= 0.9
