"""A hard inspection set to develop the vision model against (not a UNS source).

Modelled on real casting-inspection sets: larger grayscale images (300 px by default), about
one defective part in three, several cameras with their own lighting (gain, offset, a light
gradient, vignetting), no capture time, and defects that are small and low in contrast
against a textured surface: a shallow pit, a faint short scratch, or a notch in the rim. A
defect covers well under 1 % of the image, so a linear model on downscaled pixels cannot
find it; a small CNN can.

Every image is drawn from its own seeded stream (``seed``, index): the set is the same on
every run and any image can be rendered alone. 3,000 images at 300 px take about 15 s.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

LABEL_OK = "ok"
LABEL_DEFECT = "defect"
DEFECT_KINDS = ("pit", "scratch", "notch")


@dataclass(frozen=True)
class Source:
    """One camera/line: its own lighting."""

    name: str
    gain: float
    offset: float
    gradient: float  # grey levels across the image
    vignette: float  # darkening at the corners, grey levels


SOURCES = (
    Source("line1-cam1", 1.00, 0.0, 12.0, 10.0),
    Source("line1-cam2", 0.85, 18.0, 20.0, 4.0),
    Source("line2-cam1", 1.15, -15.0, 6.0, 18.0),
    Source("line2-cam2", 0.95, 8.0, 25.0, 12.0),
)


def _smooth(rng: np.random.Generator, size: int, cells: int, amplitude: float) -> np.ndarray:
    coarse = rng.standard_normal((cells, cells), dtype=np.float32) * amplitude
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))


@functools.cache
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.ogrid[0:size, 0:size]
    return yy.astype(np.float32), xx.astype(np.float32)


@functools.cache
def _corner(size: int) -> np.ndarray:
    yy, xx = _grid(size)
    s = float(size)
    return ((xx - s / 2) ** 2 + (yy - s / 2) ** 2) / (s * s / 2)


@functools.cache
def _grain_bank(size: int) -> np.ndarray:
    return np.random.default_rng(size).standard_normal((2 * size, 2 * size), dtype=np.float32)


def _grain(rng: np.random.Generator, size: int) -> np.ndarray:
    """Sensor grain: a random crop of a fixed noise field (drawing fresh normals per image
    is the slowest step of rendering; a crop at a random offset is as good for a test set)."""
    y, x = rng.integers(0, size, size=2)
    return _grain_bank(size)[y : y + size, x : x + size]


def render(rng: np.random.Generator, size: int, kind: str | None, source: Source) -> np.ndarray:
    """One grayscale image (uint8, size x size); ``kind`` None is a good part."""
    s = float(size)
    yy, xx = _grid(size)
    # Background: a dark fixture with smooth shading, then a round cast part with a rim,
    # an inner ring and a bore, all with a grainy cast surface.
    img = 60.0 + _smooth(rng, size, 6, 5.0)
    cx, cy = s / 2 + rng.uniform(-s / 30, s / 30, size=2)
    radius = s * rng.uniform(0.40, 0.44)
    r = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    body = np.clip(radius - r + 0.5, 0.0, 1.0)
    ring = np.maximum(0.0, 1.0 - ((r - radius * 0.62) / (s / 40)) ** 2)  # a soft ridge
    bore = np.clip(radius * 0.22 - r + 0.5, 0.0, 1.0)
    img = img + body * (70.0 + _smooth(rng, size, 12, 4.0) + 14.0 * ring) - 60.0 * bore
    # The camera's draws come before the defect's: the same stream with and without a
    # defect gives the same image apart from the defect.
    grain = _grain(rng, size)
    g = rng.uniform(0, 2 * np.pi)
    gain = source.gain * rng.uniform(0.93, 1.07)
    offset = source.offset + rng.uniform(-8, 8)
    if kind == "pit":
        # A shallow blow hole: a dark spot a few pixels across with a lighter lip.
        a = rng.uniform(0, 2 * np.pi)
        d = radius * rng.uniform(0.3, 0.85)
        px, py = cx + d * np.cos(a), cy + d * np.sin(a)
        rad = s * rng.uniform(0.016, 0.026)
        dist2 = (xx - px) ** 2 + (yy - py) ** 2
        img = img - rng.uniform(30.0, 45.0) * np.exp(-dist2 / (2 * rad**2))
        img = img + 8.0 * np.exp(-dist2 / (2 * (1.8 * rad) ** 2))
    elif kind == "scratch":
        a = rng.uniform(0, 2 * np.pi)
        d = radius * rng.uniform(0.25, 0.7)
        mx, my = cx + d * np.cos(a), cy + d * np.sin(a)
        theta = rng.uniform(0, np.pi)
        half = 0.5 * s * rng.uniform(0.08, 0.16)
        ux, uy = np.cos(theta), np.sin(theta)
        along = np.clip((xx - mx) * ux + (yy - my) * uy, -half, half)
        dist = np.sqrt((xx - mx - along * ux) ** 2 + (yy - my - along * uy) ** 2)
        width = s * rng.uniform(0.008, 0.013)
        img = img - rng.uniform(28.0, 40.0) * np.clip(width - dist + 0.5, 0.0, 1.0)
    elif kind == "notch":
        # Material missing at the rim: a dent into the part's edge.
        a = rng.uniform(0, 2 * np.pi)
        px, py = cx + radius * np.cos(a), cy + radius * np.sin(a)
        rad = s * rng.uniform(0.03, 0.045)
        inside = np.clip(rad - np.sqrt((xx - px) ** 2 + (yy - py) ** 2) + 0.5, 0.0, 1.0)
        img = img - 0.55 * 70.0 * inside * body
    # The camera: grain, gain and offset, a light gradient and vignetting.
    img = img + grain * 6.0
    ramp = ((xx - s / 2) * np.cos(g) + (yy - s / 2) * np.sin(g)) / s
    img = img * gain + offset
    img = img + source.gradient * ramp - source.vignette * _corner(size)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def encode_png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)  # fast: a test set
    return buf.getvalue()


def hard_set(
    n: int = 3000,
    size: int = 300,
    seed: int = 0,
    defect_share: float = 1 / 3,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> pl.DataFrame:
    """``n`` images in the shape of ``features.image_dataset`` (ts is null).

    Columns: image_id, camera_id, unit_id, ts, width, height, label (``ok``/``defect``),
    kind (pit, scratch, notch or null), png, split. The split is random but stratified by
    camera and label (seeded), as a representative split of a set without times would be.
    """
    master = np.random.default_rng([seed, 0])
    cams = master.integers(0, len(SOURCES), size=n)
    defective = master.random(n) < defect_share
    kinds = master.integers(0, len(DEFECT_KINDS), size=n)
    rows = []
    for i in range(n):
        kind = DEFECT_KINDS[kinds[i]] if defective[i] else None
        pixels = render(np.random.default_rng([seed, 1, i]), size, kind, SOURCES[cams[i]])
        rows.append((f"hard-{seed}-{i:05d}", SOURCES[cams[i]].name, kind, encode_png(pixels)))
    frame = pl.DataFrame(
        rows, schema=["image_id", "camera_id", "kind", "png"], orient="row"
    ).with_columns(
        pl.col("image_id").alias("unit_id"),
        pl.lit(None, pl.Datetime("us", "UTC")).alias("ts"),
        pl.lit(size, pl.Int32).alias("width"),
        pl.lit(size, pl.Int32).alias("height"),
        pl.when(pl.col("kind").is_null()).then(pl.lit(LABEL_OK)).otherwise(pl.lit(LABEL_DEFECT))
        .alias("label"),
    )
    return _stratified_split(frame, seed, fractions).select(
        "image_id", "camera_id", "unit_id", "ts", "width", "height", "label", "kind", "png",
        "split",
    )


def _stratified_split(
    frame: pl.DataFrame, seed: int, fractions: tuple[float, float, float]
) -> pl.DataFrame:
    order = np.random.default_rng([seed, 2]).permutation(frame.height)
    group = ["camera_id", "label"]
    position = pl.col("_order").rank("ordinal").over(group) / pl.len().over(group)
    train_end, val_end = fractions[0], fractions[0] + fractions[1]
    split = (
        pl.when(position <= train_end).then(pl.lit("train"))
        .when(position <= val_end).then(pl.lit("validation"))
        .otherwise(pl.lit("test"))
    )
    return (
        frame.with_columns(pl.Series("_order", order))
        .with_columns(split.alias("split"))
        .drop("_order")
    )


def write_folder(frame: pl.DataFrame, directory: Path) -> Path:
    """The images as PNG files plus ``labels.csv`` (file, label, camera, kind; no ts), the
    shape of a real labelled folder; returns the labels file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for image_id, camera, png in frame.select("image_id", "camera_id", "png").iter_rows():
        name = f"{camera}/{image_id}.png"
        (directory / camera).mkdir(exist_ok=True)
        (directory / name).write_bytes(png)
        names.append(name)
    labels = directory / "labels.csv"
    frame.select(
        pl.Series("file", names), "label", pl.col("camera_id").alias("camera"), "kind"
    ).write_csv(labels)
    return labels
