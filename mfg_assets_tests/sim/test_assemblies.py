"""Assembly images: deterministic, ground truth matches the pixels, missing slots are empty."""

from __future__ import annotations

import json

import numpy as np

from mfg_assets.lake.registry import table
from mfg_assets.sim import assemblies
from mfg_assets.sim.images import decode_png
from mfg_assets.sim.rng import rng_for


def test_same_seed_same_images_and_truth():
    a = assemblies.dataset(12, seed=5)
    b = assemblies.dataset(12, seed=5)
    assert a.equals(b)
    c = assemblies.dataset(12, seed=6)
    assert a.get_column("png").to_list() != c.get_column("png").to_list()
    # a longer run starts with the same images (one stream per image)
    assert assemblies.dataset(20, seed=5).head(12).drop("split").equals(a.drop("split"))


def test_dataset_fits_the_registered_feature_table():
    frame = assemblies.dataset(20, seed=1)
    table("features.assembly_images").schema.validate(frame)
    assert set(frame.get_column("split")) == {"train", "validation", "test"}


def test_boxes_and_missing_partition_the_layout():
    frame = assemblies.dataset(60, seed=2, p_missing=0.2)
    for row in frame.iter_rows(named=True):
        boxes, missing = json.loads(row["boxes"]), json.loads(row["missing"])
        classes = sorted(b[0] for b in boxes + missing)
        assert classes == sorted(cls for cls, _, _ in assemblies.LAYOUT)
        for _, x0, y0, x1, y1 in boxes + missing:
            assert 0 <= x0 < x1 <= row["width"] and 0 <= y0 < y1 <= row["height"]
        assert row["label"] == ("missing_part" if missing else "ok")
    labels = frame.get_column("label").to_list()
    assert 0 < labels.count("missing_part") < len(labels)


def test_a_missing_part_changes_its_box_only():
    """The ground truth tells the truth: leaving slot 2 out darkens (or brightens) the
    pixels inside its nominal box, far more than anywhere else."""
    full = assemblies.render_assembly(rng_for(0, "t", 1), 96, force_missing=(99,))
    gone = assemblies.render_assembly(rng_for(0, "t", 1), 96, force_missing=(99, 2))
    assert len(full.boxes) == len(assemblies.LAYOUT) and not full.missing
    assert [m[0] for m in gone.missing] == [assemblies.LAYOUT[2][0]]
    diff = np.abs(full.pixels.astype(float) - gone.pixels.astype(float))
    _, x0, y0, x1, y1 = gone.missing[0]
    inside = np.zeros_like(diff, bool)
    inside[int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))] = True
    assert diff[inside].mean() > 20 * max(diff[~inside].mean(), 0.1)


def test_png_round_trip():
    frame = assemblies.dataset(3, seed=0, size=64)
    pixels = decode_png(frame.get_column("png")[0])
    assert pixels.shape == (64, 64) and pixels.dtype == np.uint8
