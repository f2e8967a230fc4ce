"""Fixtures for the edge room: keys, simulator images, a small trained CNN, bundles."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mfg_assets.edge import signing
from mfg_assets.edge.bundle import Bundle, build_bundle, threshold_entry
from mfg_assets.edge.predictor import image_preprocessing, normalise
from mfg_assets.fleet.export import export_onnx
from mfg_assets.sim.config import IMAGE_LABELS, PlantLayout
from mfg_assets.sim.images import encode_png, render
from mfg_assets.sim.rng import rng_for

SIZE = 64
CLASSES = sorted(IMAGE_LABELS)  # the vision model's convention: sorted label names
CAMERAS = {c.camera_id: c for c in PlantLayout().cameras}


def sim_images(
    camera_id: str, n: int, seed: int = 0, labels: tuple[str, ...] = IMAGE_LABELS
) -> tuple[np.ndarray, list[str]]:
    """n simulator images (uint8, n x 64 x 64) of one camera, labels drawn evenly."""
    camera = CAMERAS[camera_id]
    chosen = [labels[k % len(labels)] for k in range(n)]
    pixels = np.stack(
        [render(rng_for(seed, "edge-test", camera_id, k), SIZE, label, camera)
         for k, label in enumerate(chosen)]
    )
    return pixels, chosen


def model_inputs(pixels: np.ndarray) -> np.ndarray:
    """What the vision model sees: float32 (n, 1, 64, 64), each image standardised."""
    return normalise(pixels.astype(np.float32)[:, None], {"type": "per_image", "min_std": 1.0})


def png_of(pixels: np.ndarray) -> bytes:
    return encode_png(pixels)


class TinyCNN(nn.Module):
    """A small CNN of the vision model's shape (conv blocks, BN, global avg+max pooling)."""

    def __init__(self, n_classes: int = 4, c: int = 6) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))

        # Average-pool to 32 px first: keeps the fixture's training to seconds on 2 cores.
        self.features = nn.Sequential(
            nn.AvgPool2d(2), block(1, c), block(c, 2 * c), block(2 * c, 2 * c)
        )
        self.head = nn.Linear(4 * c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.head(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1))


@pytest.fixture(scope="session")
def trained_cnn() -> tuple[nn.Module, np.ndarray, np.ndarray]:
    """A TinyCNN trained for a few seconds on cam-01 images, and a labelled test set."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    pixels, labels = sim_images("cam-01", 400, seed=1)
    x = torch.from_numpy(model_inputs(pixels))
    y = torch.tensor([CLASSES.index(label) for label in labels])
    net = TinyCNN(len(CLASSES))
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-2)
    net.train()
    for _ in range(10):
        for idx in torch.randperm(len(x)).split(32):
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    net.eval()
    torch.set_num_threads(threads)
    test_pixels, test_labels = sim_images("cam-01", 200, seed=2)
    test_y = np.array([CLASSES.index(label) for label in test_labels])
    return net, model_inputs(test_pixels), test_y


@pytest.fixture(scope="session")
def cnn_onnx(trained_cnn, tmp_path_factory) -> Path:
    net, x, _ = trained_cnn
    return export_onnx(net, x[:1], tmp_path_factory.mktemp("onnx") / "cnn.onnx")


@pytest.fixture
def keys(tmp_path: Path):
    private_path, public_path = signing.generate_keypair(tmp_path / "keys")
    return signing.load_private_key(private_path), signing.load_public_key(public_path)


@pytest.fixture
def make_vision_bundle(
    tmp_path: Path, cnn_onnx: Path, keys
) -> Callable[..., Bundle]:
    """Build a signed vision bundle for an edge; ``version`` / ``threshold`` vary it."""
    counter = iter(range(1000))

    def make(edge_id: str = "edge-cam01", version: int = 1, threshold: float = 0.5,
             model_file: Path | None = None) -> Bundle:
        scores = np.linspace(0, threshold, 100)
        return build_bundle(
            tmp_path / "built" / f"b{next(counter)}",
            edge_id=edge_id,
            model_file=model_file or cnn_onnx,
            preprocessing=image_preprocessing(SIZE, CLASSES),
            threshold=threshold_entry(scores, 0.999999, "test"),
            model_name="vision_defect",
            model_version=version,
            lineage={"delta_versions": {"features.image_dataset": 3}},
            export={"precision": "fp32", "reason": "test"},
            private_key=keys[0],
        )

    return make
