"""Assembly camera images: a board with components at nominal positions, some missing.

A board carries a fixed layout of component slots (``LAYOUT``: type and nominal centre as
a fraction of the image side). Each image jitters the board's position and every part a
little, and leaves a slot empty (only its solder pads show) with probability
``p_missing`` -- the defect the ``part_detection`` family finds. Ground truth per image:
one box per present component ``(class, x0, y0, x1, y1)`` in pixels, and the slots that
are missing (with their nominal boxes). Each image is rendered from its own random
stream, so a data set is the same for the same seed whatever its length.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from mfg_assets.sim.images import encode_png
from mfg_assets.sim.rng import rng_for

CLASSES = ("capacitor", "chip", "connector", "resistor")
# (type, centre x, centre y) as fractions of the side: six slots, two of them chips
LAYOUT: tuple[tuple[str, float, float], ...] = (
    ("chip", 0.30, 0.30),
    ("chip", 0.70, 0.32),
    ("capacitor", 0.28, 0.70),
    ("resistor", 0.55, 0.62),
    ("resistor", 0.78, 0.72),
    ("connector", 0.50, 0.88),
)
# half width, half height as fractions of the side
HALF_SIZE = {
    "chip": (0.10, 0.10),
    "capacitor": (0.075, 0.075),
    "resistor": (0.07, 0.035),
    "connector": (0.22, 0.05),
}
BOARD_LEVEL = 70.0


@dataclass(frozen=True)
class Assembly:
    pixels: np.ndarray  # uint8 (size, size)
    boxes: list[tuple[str, float, float, float, float]]  # present parts: cls, x0, y0, x1, y1
    missing: list[tuple[str, float, float, float, float]]  # empty slots, nominal boxes


def _box(cls: str, cx: float, cy: float, size: int) -> tuple[str, float, float, float, float]:
    hw, hh = HALF_SIZE[cls]
    s = float(size)
    return (cls, round(cx - hw * s, 2), round(cy - hh * s, 2), round(cx + hw * s, 2),
            round(cy + hh * s, 2))


def render_assembly(rng: np.random.Generator, size: int = 96, p_missing: float = 0.1,
                    force_missing: tuple[int, ...] = ()) -> Assembly:
    """One board image with its ground truth (``force_missing``: slot indices left empty)."""
    s = float(size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = BOARD_LEVEL + rng.standard_normal((size, size)).astype(np.float32) * 4.0
    # board texture: faint traces, and an uneven light
    img += 6.0 * (np.sin(xx * rng.uniform(0.3, 0.5)) > 0.95)
    img += rng.uniform(-12, 12) * (xx / s - 0.5) + rng.uniform(-12, 12) * (yy / s - 0.5)
    shift = rng.uniform(-0.03, 0.03, size=2) * s  # the board sits a little off in its fixture
    # Every draw is made whatever is missing: the same stream renders the same board with
    # and without a part (the tests compare the two).
    draws = rng.random(len(LAYOUT))
    jitter = rng.uniform(-0.015, 0.015, size=(len(LAYOUT), 2)) * s
    phase = rng.uniform(0, 0.3)
    noise = rng.standard_normal((size, size)).astype(np.float32) * 3.0
    boxes, missing = [], []
    for slot, (cls, fx, fy) in enumerate(LAYOUT):
        cx, cy = fx * s + shift[0], fy * s + shift[1]
        absent = slot in force_missing or (not force_missing and draws[slot] < p_missing)
        if absent:
            missing.append(_box(cls, cx, cy, size))
            _pads(img, xx, yy, cls, cx, cy, s)
            continue
        cx, cy = cx + jitter[slot, 0], cy + jitter[slot, 1]
        _part(img, xx, yy, cls, cx, cy, s, phase)
        boxes.append(_box(cls, cx, cy, size))
    img += noise
    pixels = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return Assembly(pixels, boxes, missing)


def _rect(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, hw: float, hh: float) -> np.ndarray:
    """Soft-edged rectangle mask (1 inside, a one-pixel ramp at the edge)."""
    inside_x = np.clip(hw - np.abs(xx - cx) + 0.5, 0.0, 1.0)
    inside_y = np.clip(hh - np.abs(yy - cy) + 0.5, 0.0, 1.0)
    return inside_x * inside_y


def _pads(img: np.ndarray, xx: np.ndarray, yy: np.ndarray, cls: str, cx: float, cy: float,
          s: float) -> None:
    """An empty slot: two small bright solder pads where the part's ends would be."""
    hw, hh = HALF_SIZE[cls]
    for side in (-1, 1):
        img += 45.0 * _rect(xx, yy, cx + side * 0.8 * hw * s, cy, 0.15 * hw * s + 1, 0.5 * hh * s)


def _part(img: np.ndarray, xx: np.ndarray, yy: np.ndarray, cls: str, cx: float, cy: float,
          s: float, phase: float) -> None:
    hw, hh = HALF_SIZE[cls][0] * s, HALF_SIZE[cls][1] * s
    if cls == "capacitor":  # a bright can with a dark ring
        r = np.hypot(xx - cx, yy - cy)
        img += 110.0 * np.clip(hw - r + 0.5, 0.0, 1.0) - 50.0 * np.clip(
            1.2 - np.abs(r - 0.6 * hw), 0.0, 1.0)
    elif cls == "chip":  # a dark package with pins on two sides
        img -= 45.0 * _rect(xx, yy, cx, cy, 0.8 * hw, 0.8 * hh)
        pins = (np.sin((yy - cy) * 1.6) > 0).astype(np.float32)
        for side in (-1, 1):
            img += 80.0 * pins * _rect(xx, yy, cx + side * 0.9 * hw, cy, 0.1 * hw + 0.5,
                                       0.75 * hh)
    elif cls == "resistor":  # a mid-grey body with bright ends
        img += 40.0 * _rect(xx, yy, cx, cy, hw, hh)
        for side in (-1, 1):
            img += 70.0 * _rect(xx, yy, cx + side * 0.85 * hw, cy, 0.15 * hw + 0.5, hh)
    else:  # connector: a long light housing with dark holes
        img += 90.0 * _rect(xx, yy, cx, cy, hw, hh)
        holes = (np.sin((xx - cx) * 0.9 + phase) > 0.3).astype(np.float32)
        img -= 60.0 * holes * _rect(xx, yy, cx, cy, 0.9 * hw, 0.4 * hh)


def boxes_json(boxes: list[tuple[str, float, float, float, float]]) -> str:
    """The feature table's box column: ``[[cls, x0, y0, x1, y1], ...]`` as JSON text."""
    return json.dumps([list(b) for b in boxes], separators=(",", ":"))


def dataset(
    n: int, seed: int = 0, size: int = 96, p_missing: float = 0.1, camera_id: str = "asm-cam01",
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC),
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> pl.DataFrame:
    """``n`` assembly images in the shape of ``features.assembly_images`` (time-ordered
    split: the first 70 % train, then validation, then test)."""
    rows = []
    for k in range(n):
        asm = render_assembly(rng_for(seed, "assembly", camera_id, k), size, p_missing)
        position = k / max(n, 1)
        split = ("train" if position < fractions[0] else
                 "validation" if position < fractions[0] + fractions[1] else "test")
        rows.append({
            "image_id": f"{camera_id}-{k:06d}",
            "camera_id": camera_id,
            "unit_id": f"board-{k:06d}",
            "ts": start + timedelta(seconds=10 * k),
            "width": size,
            "height": size,
            "label": "missing_part" if asm.missing else "ok",
            "png": encode_png(asm.pixels),
            "boxes": boxes_json(asm.boxes),
            "missing": boxes_json(asm.missing),
            "split": split,
        })
    schema = {"image_id": pl.String, "camera_id": pl.String, "unit_id": pl.String,
              "ts": pl.Datetime("us", "UTC"), "width": pl.Int32, "height": pl.Int32,
              "label": pl.String, "png": pl.Binary, "boxes": pl.String, "missing": pl.String,
              "split": pl.String}
    return pl.DataFrame(rows, schema=schema)
