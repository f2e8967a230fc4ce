"""Inspection CNN (multi-class) and one-class autoencoder on simulated images."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mfg_assets.ml import vision


@pytest.fixture(scope="module")
def multiclass(image_dataset):
    return vision.train(image_dataset, {"epochs": 6}, seed=0)


@pytest.mark.slow
def test_classifies_defects(multiclass, image_dataset):
    # The majority class ("ok") alone would score ~0.7.
    assert multiclass.holdout_metrics["accuracy"] >= 0.93
    assert multiclass.holdout_metrics["recall_missing_part"] >= 0.95
    assert multiclass.holdout_metrics["recall_defect"] >= 0.9
    assert multiclass.info["classes"] == ["dent", "missing_part", "ok", "scratch"]
    assert multiclass.info["image_size"] == 64
    assert multiclass.figures["confusion_matrix.png"].startswith(b"\x89PNG")
    assert vision.evaluate(multiclass.model, image_dataset, multiclass.info) == pytest.approx(
        multiclass.holdout_metrics
    )


@pytest.mark.slow
def test_save_load_predicts_the_same(multiclass, image_dataset, tmp_path):
    vision.save(multiclass, tmp_path / "m")
    net, info = vision.load(tmp_path / "m")
    png = image_dataset.get_column("png").head(50).to_list()
    np.testing.assert_array_equal(
        vision.predict_classes(net, png, info), vision.predict_classes(multiclass.model, png, info)
    )


@pytest.mark.slow
def test_one_class_finds_defects_without_defect_labels(image_dataset):
    # Training sees "ok" images only; labels of other classes are used for scoring alone.
    result = vision.train(image_dataset, {"mode": "one_class"}, seed=0)
    assert result.info["normal_class"] == "ok" and result.info["threshold"] > 0
    assert result.holdout_metrics["f1"] >= 0.8
    assert result.holdout_metrics["auroc"] >= 0.85
    assert result.figures["reconstruction_error.png"].startswith(b"\x89PNG")


def test_class_names_come_from_the_data(image_dataset):
    names = {"ok": "gut", "scratch": "Kratzer", "dent": "Delle", "missing_part": "fehlt"}
    renamed = image_dataset.with_columns(pl.col("label").replace(names))
    small = renamed.filter(pl.int_range(pl.len()).over("split") < 120)
    result = vision.train(small, {"epochs": 1, "channels": 4}, seed=0)
    assert result.info["classes"] == sorted(names.values())
    assert result.info["normal_class"] == "gut"  # no "ok"-like name: the most frequent class
    defect_vs_normal = {"balanced_accuracy", "recall_defect", "precision_defect", "auroc"}
    assert set(result.holdout_metrics) == (
        {"accuracy"} | {f"recall_{n}" for n in names.values()} | defect_vs_normal
    )


def test_same_seed_same_weights(image_dataset):
    small = image_dataset.filter(pl.int_range(pl.len()).over("split") < 64)
    params = {"epochs": 1, "channels": 4, "threads": 1}  # the default follows the load
    a = vision.train(small, params, seed=1).model.state_dict()
    b = vision.train(small, params, seed=1).model.state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_unknown_mode_is_refused(image_dataset):
    with pytest.raises(ValueError, match="mode"):
        vision.train(image_dataset.head(10), {"mode": "zero_shot"})


# -- working resolution, decode cache, threshold, progress (hard simulated set) ----------------


@pytest.fixture(scope="module")
def hard_small():
    from mfg_assets.sim.hard_images import hard_set

    return hard_set(120, 160, seed=2)


def test_working_size_is_the_smallest_side_capped(hard_small):
    assert vision.working_size(hard_small) == 128  # 160 px images, capped
    small = hard_small.with_columns(pl.lit(64, pl.Int32).alias("width"))
    assert vision.working_size(small) == 64  # never above the smallest side
    assert vision.working_size(hard_small, 96) == 96  # the family's param wins


def test_normal_class_by_name_else_most_frequent():
    labels = pl.Series(["def_front"] * 5 + ["ok_front"] * 3)
    assert vision.normal_class(["def_front", "ok_front"], labels) == "ok_front"
    assert vision.normal_class(["a", "b"], pl.Series(["a", "b", "b"])) == "b"
    assert vision.normal_class(["a", "b"], pl.Series(["a"]), "a") == "a"


def test_images_are_decoded_once_and_cached_on_disk(hard_small, tmp_path, monkeypatch):
    png = hard_small.get_column("png").head(40).to_list()
    first = vision.cached_pixels(png, 64, tmp_path)
    assert first.shape == (40, 64, 64) and first.dtype == np.uint8
    assert len(list(tmp_path.glob("*.npy"))) == 1
    np.testing.assert_array_equal(first, vision.pixels(png, 64, threads=1))  # threads agree
    vision._MEMO.clear()

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(vision, "pixels", no_decoding)
    np.testing.assert_array_equal(vision.cached_pixels(png, 64, tmp_path), first)  # from disk
    np.testing.assert_array_equal(vision.cached_pixels(png, 64), first)  # from memory
    with pytest.raises(AssertionError, match="decoded again"):  # other content: a new key
        vision.cached_pixels(png[:39], 64, tmp_path)


@given(
    scores=st.lists(st.floats(0, 1), min_size=1, max_size=60),
    target=st.floats(0.05, 1.0),
)
def test_threshold_reaches_the_target_recall(scores, target):
    score = np.array(scores)
    defect = np.arange(len(score)) % 2 == 0
    threshold = vision.defect_threshold(score, defect, target)
    assert threshold <= 0.5
    assert (score[defect] >= threshold).mean() >= target - 1e-12


def test_trains_at_the_working_size_with_progress_and_defect_metrics(hard_small, caplog):
    caplog.set_level("INFO", logger=vision.__name__)
    result = vision.train(
        hard_small, {"epochs": 2, "channels": 4, "image_size": 64, "disk_cache": False}, seed=0
    )
    assert result.info["image_size"] == 64 and result.info["normal_class"] == "ok"
    assert 0 < result.info["defect_threshold"] <= 0.5
    epochs = [r.getMessage() for r in caplog.records if "vision epoch" in r.getMessage()]
    assert len(epochs) == result.info["epochs_run"] >= 1
    assert "validation balanced accuracy" in epochs[0]
    for metrics in (result.metrics, result.holdout_metrics):
        assert {"accuracy", "balanced_accuracy", "recall_defect"} <= set(metrics)
    # the threshold was chosen for 90 % defect recall on validation
    assert result.metrics["recall_defect"] >= 0.9


@pytest.mark.slow
def test_beats_logistic_regression_on_the_hard_set():
    import sys
    from pathlib import Path

    from mfg_assets.sim.hard_images import hard_set

    sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
    from bench_vision import baselines

    frame = hard_set(900, 300, seed=5)
    result = vision.train(frame, {"disk_cache": False}, seed=0)
    base = baselines(frame)
    assert result.holdout_metrics["balanced_accuracy"] > base["majority"]["balanced_accuracy"]
    assert (result.holdout_metrics["balanced_accuracy"]
            > base["logreg_pixels"]["balanced_accuracy"] + 0.05)
