"""Inspection CNN (multi-class) and one-class autoencoder on simulated images."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from mfg_assets.ml import vision


@pytest.fixture(scope="module")
def multiclass(image_dataset):
    return vision.train(image_dataset, {"epochs": 6}, seed=0)


@pytest.mark.slow
def test_classifies_defects(multiclass, image_dataset):
    # The majority class ("ok") alone would score ~0.7.
    assert multiclass.holdout_metrics["accuracy"] >= 0.93
    assert multiclass.holdout_metrics["recall_missing_part"] >= 0.95
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
    assert set(result.holdout_metrics) == {"accuracy"} | {f"recall_{n}" for n in names.values()}


def test_same_seed_same_weights(image_dataset):
    small = image_dataset.filter(pl.int_range(pl.len()).over("split") < 64)
    params = {"epochs": 1, "channels": 4}
    a = vision.train(small, params, seed=1).model.state_dict()
    b = vision.train(small, params, seed=1).model.state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_unknown_mode_is_refused(image_dataset):
    with pytest.raises(ValueError, match="mode"):
        vision.train(image_dataset.head(10), {"mode": "zero_shot"})
