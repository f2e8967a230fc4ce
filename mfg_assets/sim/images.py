"""Inspection camera images: a machined surface with a bright rounded part, and defects.

Each image is rendered from its own random stream, so images are independent and a
label's look does not depend on what came before. Defects are drawn to be plainly
visible to a small CNN at 64 px: a thin scratch, a shaded dent, or the part missing.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import numpy as np
from PIL import Image

from mfg_assets.sim import drift
from mfg_assets.sim.config import Camera, SimConfig
from mfg_assets.sim.messages import SimMessage, json_message
from mfg_assets.sim.rng import rng_for
from mfg_assets.sim.schedule import time_grid
from mfg_assets.uns.topics import MessageClass

SURFACE_LEVEL = 105.0
PART_LEVEL = 95.0  # the part's brightness above the surface


def _low_frequency(rng: np.random.Generator, size: int, cells: int, amplitude: float) -> np.ndarray:
    """Smooth shading (uneven illumination, surface finish) by upsampling a coarse grid."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32) * amplitude
    img = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def _segment_distance(xx: np.ndarray, yy: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    d = p1 - p0
    t = np.clip(((xx - p0[0]) * d[0] + (yy - p0[1]) * d[1]) / max(float(d @ d), 1e-9), 0.0, 1.0)
    return np.hypot(xx - (p0[0] + t * d[0]), yy - (p0[1] + t * d[1]))


def render(
    rng: np.random.Generator,
    size: int,
    label: str,
    camera: Camera,
    brightness: float = 0.0,
    contrast: float = 1.0,
) -> np.ndarray:
    """A grayscale image (uint8, size x size) showing ``label``."""
    s = float(size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = SURFACE_LEVEL + _low_frequency(rng, size, 5, 6.0)
    # Machining marks: fine parallel grooves at a slightly varying angle.
    angle = rng.uniform(-0.35, 0.35) + np.pi / 4
    freq = rng.uniform(0.55, 0.8)
    phase = rng.uniform(0, 2 * np.pi)
    along = xx * np.cos(angle) + yy * np.sin(angle)
    img += 5.0 * np.sin(freq * along + phase)

    cx, cy = s / 2 + rng.uniform(-s / 16, s / 16, size=2)
    radius = s * rng.uniform(0.19, 0.23)
    if label != "missing_part":
        # A rounded part (a boss/nut) with a soft edge, a darker bore and a small highlight.
        r = np.hypot(xx - cx, yy - cy)
        body = np.clip(radius - r + 0.5, 0.0, 1.0)
        bore = np.clip(radius * 0.35 - r + 0.5, 0.0, 1.0)
        highlight = np.exp(
            -((xx - cx + radius * 0.35) ** 2 + (yy - cy + radius * 0.35) ** 2)
            / (2 * (radius * 0.3) ** 2)
        )
        img += body * (PART_LEVEL + 20.0 * highlight) - bore * 70.0
    else:
        # Where the part should be: a faint darker footprint of the mounting surface.
        r = np.hypot(xx - cx, yy - cy)
        img -= 8.0 * np.clip(radius - r + 0.5, 0.0, 1.0)

    if label == "scratch":
        length = s * rng.uniform(0.35, 0.7)
        theta = rng.uniform(0, np.pi)
        mid = np.array([rng.uniform(0.3, 0.7) * s, rng.uniform(0.3, 0.7) * s])
        half = 0.5 * length * np.array([np.cos(theta), np.sin(theta)])
        dist = _segment_distance(xx, yy, mid - half, mid + half)
        width = rng.uniform(0.6, 1.1) * s / 64
        depth = rng.uniform(55.0, 80.0) * rng.choice([-1.0, 1.0], p=[0.75, 0.25])
        img += depth * np.clip(width - dist + 0.5, 0.0, 1.0)
    elif label == "dent":
        # A dent catches the light on one flank and shadows the other.
        dx, dy = rng.uniform(0.2, 0.8, size=2) * s
        rad = s * rng.uniform(0.07, 0.11)
        g = np.exp(-((xx - dx) ** 2 + (yy - dy) ** 2) / (2 * rad**2))
        light = rng.uniform(0, 2 * np.pi)
        shade = ((xx - dx) * np.cos(light) + (yy - dy) * np.sin(light)) / rad
        img += g * (-45.0 + 35.0 * shade)

    img += rng.standard_normal((size, size)).astype(np.float32) * camera.noise
    img = (img - 128.0) * camera.contrast * contrast + 128.0 + camera.brightness + brightness
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def encode_png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


def camera_messages(config: SimConfig, camera: Camera) -> Iterator[SimMessage]:
    plant = config.plant
    topic = plant.topic(
        plant.inspect_area, plant.inspect_line, camera.cell, camera.camera_id,
        MessageClass.INSPECTION,
    )
    period_ms = round(config.image_period_s * 1000)
    phase = int(rng_for(config.seed, "image-phase", camera.camera_id).integers(0, period_ms))
    ts = time_grid(
        config,
        config.image_period_s,
        phase,
        500,
        rng_for(config.seed, "image-jitter", camera.camera_id),
    )
    labels = [label for label, _ in config.image_class_mix]
    shares = np.array([share for _, share in config.image_class_mix])
    label_idx = rng_for(config.seed, "image-labels", camera.camera_id).choice(
        len(labels), size=len(ts), p=shares / shares.sum()
    )
    lighting = drift.lighting_for(config, camera.camera_id)
    size = config.image_size
    for k, t in enumerate(ts.tolist()):
        label = labels[label_idx[k]]
        brightness, contrast = 0.0, 1.0
        if lighting is not None and t >= lighting[0]:
            brightness, contrast = lighting[1], lighting[2]
        rng = rng_for(config.seed, "image", camera.camera_id, k)
        pixels = render(rng, size, label, camera, brightness, contrast)
        doc = {
            "timestamp": t,
            "imageId": f"{camera.camera_id}-{t}",
            "unitId": f"{plant.inspect_line}-{camera.cell}-{t}",
            "width": size,
            "height": size,
            "encoding": "png",
            "data": base64.b64encode(encode_png(pixels)).decode("ascii"),
            "label": label,
        }
        yield json_message(t, topic, doc)
