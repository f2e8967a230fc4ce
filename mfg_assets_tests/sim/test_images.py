"""Inspection images: valid PNGs of the configured size, labelled, and separable by class."""

from __future__ import annotations

import base64

import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mfg_assets.sim import SimConfig, iter_messages
from mfg_assets.sim.images import decode_png

LABELS = ("ok", "scratch", "dent", "missing_part")
# Balanced classes for the separability check: ~1200 images from two cameras.
CONFIG = SimConfig(
    seed=13,
    duration_h=1.0,
    image_period_s=6.0,
    sources=("images",),
    image_class_mix=tuple((label, 0.25) for label in LABELS),
)


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray, list[dict]]:
    docs = [m.doc for m in iter_messages(CONFIG)]
    pixels = np.stack([decode_png(base64.b64decode(d["data"])) for d in docs])
    labels = np.array([LABELS.index(d["label"]) for d in docs])
    return pixels, labels, docs


def test_images_are_pngs_of_the_configured_size_with_ids(images) -> None:
    pixels, labels, docs = images
    assert pixels.shape[1:] == (64, 64) and pixels.dtype == np.uint8
    assert len({d["imageId"] for d in docs}) == len(docs)
    assert all(d["width"] == d["height"] == 64 and d["encoding"] == "png" for d in docs)
    assert np.bincount(labels, minlength=4).min() > 200
    big = next(iter_messages(SimConfig(duration_h=0.1, image_size=128, sources=("images",)))).doc
    assert decode_png(base64.b64decode(big["data"])).shape == (128, 128)


def test_default_class_mix_is_mostly_ok() -> None:
    config = SimConfig(seed=1, duration_h=4.0, image_period_s=20.0, sources=("images",))
    labels = [m.doc["label"] for m in iter_messages(config)]
    share_ok = labels.count("ok") / len(labels)
    assert 0.65 < share_ok < 0.75 and set(labels) == set(LABELS)


def test_missing_part_is_obvious_from_the_centre_brightness(images) -> None:
    pixels, labels, _ = images
    centre = pixels[:, 20:44, 20:44].mean(axis=(1, 2)) - np.median(pixels, axis=(1, 2))
    missing = labels == LABELS.index("missing_part")
    assert centre[missing].max() < centre[~missing].min()


def _fit_score(x: np.ndarray, labels: np.ndarray) -> float:
    split = int(0.75 * len(labels))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(x[:split], labels[:split])
    return balanced_accuracy_score(labels[split:], model.predict(x[split:]))


def test_a_tiny_linear_model_on_downsampled_pixels_beats_chance_by_far(images) -> None:
    pixels, labels, _ = images
    x = pixels.reshape(len(pixels), 16, 4, 16, 4).mean(axis=(2, 4)).reshape(len(pixels), -1)
    assert _fit_score(x, labels) > 0.5  # chance is 0.25; a small CNN reaches > 95%


def test_five_handmade_features_nearly_separate_the_classes(images) -> None:
    pixels, labels, _ = images
    px = pixels.astype(np.float32)
    coarse = px.reshape(len(px), 16, 4, 16, 4).mean(axis=(2, 4))
    detail = px - coarse.repeat(4, axis=1).repeat(4, axis=2)  # thin lines live here
    level = np.median(px, axis=(1, 2))
    features = np.column_stack(
        [
            px[:, 20:44, 20:44].mean(axis=(1, 2)) - level,  # the part is there
            np.abs(detail).max(axis=(1, 2)),  # a scratch
            np.percentile(np.abs(detail), 99, axis=(1, 2)),
            coarse.min(axis=(1, 2)) - level,  # a dent's shadow
            coarse.std(axis=(1, 2)),
        ]
    )
    assert _fit_score(features, labels) > 0.75


def test_cameras_see_the_same_parts_under_different_light(images) -> None:
    pixels, labels, docs = images
    cams = np.array([d["imageId"].startswith("cam-02") for d in docs])
    ok = labels == 0
    mean1 = pixels[ok & ~cams].mean()
    mean2 = pixels[ok & cams].mean()
    assert 5.0 < mean2 - mean1 < 25.0


# -- the hard inspection set (sim/hard_images) --------------------------------------------------


def test_hard_set_is_deterministic_imbalanced_and_multi_camera():
    from mfg_assets.sim.hard_images import hard_set

    a = hard_set(240, 96, seed=1)
    assert a.equals(hard_set(240, 96, seed=1))  # same seed, same bytes
    assert not a["png"].equals(hard_set(240, 96, seed=2)["png"])
    assert a["ts"].null_count() == a.height  # no capture time, like a real labelled folder
    assert a["camera_id"].n_unique() == 4
    share = (a["label"] == "defect").mean()
    assert 0.25 <= share <= 0.42  # about one defect in three
    assert a.filter(pl.col("label") == "ok")["kind"].null_count() == (a["label"] == "ok").sum()
    # every camera and label appears in every split (stratified)
    groups = a.group_by("split", "camera_id", "label").len()
    assert groups.height == 3 * 4 * 2
    px = decode_png(a["png"][0])
    assert px.shape == (96, 96) and px.dtype == np.uint8


def test_hard_defects_are_small_and_faint():
    # A defect changes well under 2 % of the pixels, and by less than the part's own contrast:
    # a linear model on downscaled pixels cannot see it (see benchmarks/bench_vision.py).
    from mfg_assets.sim.hard_images import SOURCES, render

    for kind in ("pit", "scratch", "notch"):
        ok = render(np.random.default_rng([7, 1]), 300, None, SOURCES[0]).astype(int)
        bad = render(np.random.default_rng([7, 1]), 300, kind, SOURCES[0]).astype(int)
        changed = np.abs(bad - ok) > 8
        assert 0 < changed.mean() < 0.02, kind
        assert np.abs(bad - ok).max() < 70, kind
