"""Visual inspection: a small CNN on grayscale images, or a one-class autoencoder.

Input is ``features.image_dataset`` (PNG bytes with a ``split`` column). Image size and
class names come from the data. Each image is standardised on its own (zero mean, unit
variance) before the network sees it: cameras differ in brightness and contrast (and
lighting drifts), while defects are local shape, so per-image normalisation removes
what should not matter.

``params["mode"]``:

- ``"multiclass"`` (default): a four-block CNN with global average + max pooling (max
  keeps a thin scratch from being averaged away); accuracy, per-class recall and a
  confusion matrix. Training flips and rotates images by multiples of 90 degrees:
  defects have no preferred orientation.
- ``"one_class"``: for lines without defect labels. A convolutional autoencoder learns
  ``ok`` images only (the ``normal_class``); an image is a defect when its largest local
  reconstruction error (mean squared error over 8x8 patches) exceeds a high quantile of
  the errors of ``ok`` validation images. Metrics: precision / recall / f1 / auroc of
  defect vs ok.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import confusion_matrix
from torch import nn

from mfg_assets.ml import families, plots
from mfg_assets.ml.base import (
    Trained,
    binary_metrics,
    read_info,
    sample_params,
    torch_session,
    write_info,
)

_SPEC = families.spec('vision_defect')  # metrics, floors, feature table: the registry
FAMILY = _SPEC.model
FEATURE_TABLE = _SPEC.feature_table
MODEL_FILE = "model.pt"

DEFAULT_PARAMS: dict[str, Any] = {
    "mode": "multiclass",
    "channels": 8,  # first block; doubled per block (8 trains ~4k images in a minute)
    "epochs": 8,
    "batch_size": 64,
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "augment": True,
    "normal_class": "ok",  # one_class: the class to learn
    "quantile": 0.99,  # one_class: of normal validation errors -> threshold
    "patch": 8,  # one_class: error pooling window
    "threads": 2,
}
_GRID: dict[str, list[Any]] = {
    "channels": [8, 12, 16],
    "epochs": [6, 8, 12],
    "lr": [1e-3, 3e-3, 5e-3],
    "weight_decay": [0.0, 1e-4, 1e-3],
}


def search_space(budget: int, seed: int) -> list[dict[str, Any]]:
    return sample_params(np.random.default_rng(seed), _GRID, DEFAULT_PARAMS, budget)


# -- images ------------------------------------------------------------------------------------


def decode(png: list[bytes], size: int) -> np.ndarray:
    """PNG bytes -> float32 array (n, 1, size, size), each image standardised."""
    out = np.empty((len(png), 1, size, size), dtype=np.float32)
    for i, data in enumerate(png):
        img = Image.open(io.BytesIO(data)).convert("L")
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        out[i, 0] = np.asarray(img, dtype=np.float32)
    mean = out.mean(axis=(2, 3), keepdims=True)
    std = out.std(axis=(2, 3), keepdims=True)
    return (out - mean) / np.maximum(std, 1.0)


def image_size(frame: pl.DataFrame) -> int:
    """The most common image side in the data (others are resized to it)."""
    sides = frame.select(pl.max_horizontal("width", "height").alias("side"))
    return int(sides.get_column("side").mode().sort().item(-1))


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    k = int(torch.randint(0, 4, (1,), generator=generator))
    x = torch.rot90(x, k, dims=(2, 3))
    if bool(torch.randint(0, 2, (1,), generator=generator)):
        x = torch.flip(x, dims=(3,))
    return x


# -- networks ----------------------------------------------------------------------------------


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class DefectNet(nn.Module):
    """Four conv blocks, then global average and max pooling, then a linear layer."""

    def __init__(self, n_classes: int, channels: int = 16) -> None:
        super().__init__()
        c = channels
        self.features = nn.Sequential(
            _block(1, c), _block(c, 2 * c), _block(2 * c, 4 * c), _block(4 * c, 4 * c)
        )
        self.head = nn.Linear(8 * c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)


class ConvAutoencoder(nn.Module):
    """Three stride-2 conv layers down to 1/8 size and back; forward gives patch errors."""

    def __init__(self, channels: int = 16, patch: int = 8) -> None:
        super().__init__()
        c = channels
        self.patch = patch
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(2 * c, 2 * c, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1),
        )

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Largest patch-mean squared error per image (the anomaly score)."""
        error = (self.reconstruct(x) - x) ** 2
        return F.avg_pool2d(error, self.patch, stride=self.patch // 2).amax(dim=(1, 2, 3))


# -- training ----------------------------------------------------------------------------------


def _part(frame: pl.DataFrame, split: str) -> pl.DataFrame:
    return frame.filter((pl.col("split") == split) & pl.col("label").is_not_null())


def train(features: pl.DataFrame, params: dict[str, Any], seed: int = 0) -> Trained:
    p = {**DEFAULT_PARAMS, **params}
    size = image_size(features)
    with torch_session(seed, p["threads"]):
        if p["mode"] == "one_class":
            return _train_one_class(features, p, size)
        if p["mode"] != "multiclass":
            raise ValueError(f"unknown vision mode {p['mode']!r}: multiclass or one_class")
        return _train_multiclass(features, p, size)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _train_multiclass(features: pl.DataFrame, p: dict[str, Any], size: int) -> Trained:
    train_rows = _part(features, "train")
    classes = sorted(train_rows.get_column("label").unique().to_list())
    if len(classes) < 2:
        raise ValueError(f"multiclass needs two or more labels, got {classes}")
    x = torch.from_numpy(decode(train_rows.get_column("png").to_list(), size))
    y = torch.tensor(_class_index(train_rows, classes))
    net = DefectNet(len(classes), p["channels"])
    optimiser = torch.optim.AdamW(net.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    steps = p["epochs"] * math.ceil(len(x) / p["batch_size"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=p["lr"], total_steps=steps)
    generator = torch.Generator().manual_seed(int(torch.initial_seed()) % (2**31))
    for _ in range(p["epochs"]):
        net.train()
        for idx in _batches(len(x), p["batch_size"], generator):
            batch = _augment(x[idx], generator) if p["augment"] else x[idx]
            loss = F.cross_entropy(net(batch), y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    net.eval()
    info = {
        "mode": "multiclass",
        "classes": classes,
        "image_size": size,
        "channels": p["channels"],
        "normalisation": "per-image standardisation",
        "n_train": len(x),
        "split": {"method": "column", "column": "split"},
        "feature_table": FEATURE_TABLE,
    }
    validation, test = _part(features, "validation"), _part(features, "test")
    matrix, metrics = _multiclass_metrics(net, validation, info)
    _, holdout = _multiclass_metrics(net, test, info)
    figures = {}
    if matrix is not None:
        figures["confusion_matrix.png"] = plots.confusion_matrix(
            matrix, classes, "Validation images"
        )
    return Trained(net, p, metrics, holdout, figures, info)


def _class_index(rows: pl.DataFrame, classes: list[str]) -> np.ndarray:
    lookup = {name: i for i, name in enumerate(classes)}
    return np.array([lookup.get(label, -1) for label in rows.get_column("label").to_list()])


def predict_classes(net: DefectNet, png: list[bytes], info: dict[str, Any]) -> np.ndarray:
    """Class index per image, in batches."""
    out = []
    with torch.no_grad():
        for start in range(0, len(png), 256):
            x = torch.from_numpy(decode(png[start : start + 256], info["image_size"]))
            out.append(net(x).argmax(dim=1).numpy())
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def _multiclass_metrics(
    net: DefectNet, rows: pl.DataFrame, info: dict[str, Any]
) -> tuple[np.ndarray | None, dict[str, float]]:
    classes = info["classes"]
    if rows.height == 0:
        return None, {"accuracy": math.nan}
    truth = _class_index(rows, classes)
    predicted = predict_classes(net, rows.get_column("png").to_list(), info)
    metrics = {"accuracy": float((truth == predicted).mean())}
    for i, name in enumerate(classes):
        mine = truth == i
        metrics[f"recall_{name}"] = float((predicted[mine] == i).mean()) if mine.any() else math.nan
    matrix = confusion_matrix(truth, predicted, labels=list(range(len(classes))))
    return matrix, metrics


def _scores(net: ConvAutoencoder, png: list[bytes], size: int) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in range(0, len(png), 256):
            out.append(net(torch.from_numpy(decode(png[start : start + 256], size))).numpy())
    return np.concatenate(out) if out else np.empty(0, dtype=np.float32)


def _train_one_class(features: pl.DataFrame, p: dict[str, Any], size: int) -> Trained:
    normal = p["normal_class"]
    train_rows = _part(features, "train").filter(pl.col("label") == normal)
    if train_rows.height == 0:
        raise ValueError(f"one_class needs training images labelled {normal!r}")
    x = torch.from_numpy(decode(train_rows.get_column("png").to_list(), size))
    net = ConvAutoencoder(p["channels"], p["patch"])
    optimiser = torch.optim.AdamW(net.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    generator = torch.Generator().manual_seed(int(torch.initial_seed()) % (2**31))
    net.train()
    for _ in range(p["epochs"]):
        for idx in _batches(len(x), p["batch_size"], generator):
            batch = _augment(x[idx], generator) if p["augment"] else x[idx]
            loss = ((net.reconstruct(batch) - batch) ** 2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    net.eval()
    validation, test = _part(features, "validation"), _part(features, "test")
    val_normal = validation.filter(pl.col("label") == normal)
    if val_normal.height == 0:
        raise ValueError(f"one_class needs validation images labelled {normal!r}")
    threshold = float(
        np.quantile(_scores(net, val_normal.get_column("png").to_list(), size), p["quantile"])
    )
    info = {
        "mode": "one_class",
        "normal_class": normal,
        "classes": sorted(features.get_column("label").drop_nulls().unique().to_list()),
        "threshold": threshold,
        "image_size": size,
        "channels": p["channels"],
        "patch": p["patch"],
        "normalisation": "per-image standardisation",
        "n_train": len(x),
        "split": {"method": "column", "column": "split"},
        "feature_table": FEATURE_TABLE,
    }
    figures = {"reconstruction_error.png": _one_class_figure(net, validation, test, info)}
    return Trained(
        net,
        p,
        _one_class_metrics(net, validation, info),
        _one_class_metrics(net, test, info),
        figures,
        info,
    )


def _one_class_metrics(net: ConvAutoencoder, rows: pl.DataFrame, info: dict[str, Any]) -> dict:
    if rows.height == 0:
        return {"precision": math.nan, "recall": math.nan, "f1": math.nan, "auroc": math.nan}
    scores = _scores(net, rows.get_column("png").to_list(), info["image_size"])
    defect = (rows.get_column("label") != info["normal_class"]).to_numpy()
    return binary_metrics(defect, scores > info["threshold"], scores)


def _one_class_figure(
    net: ConvAutoencoder, validation: pl.DataFrame, test: pl.DataFrame, info: dict[str, Any]
) -> bytes:
    rows = pl.concat([validation, test])
    scores = _scores(net, rows.get_column("png").to_list(), info["image_size"])
    defect = (rows.get_column("label") != info["normal_class"]).to_numpy()
    panels = {"images": (scores[~defect], scores[defect], info["threshold"])}
    return plots.error_histograms(panels, "Patch reconstruction error, ok vs defect")


def evaluate(model: nn.Module, features: pl.DataFrame, info: dict[str, Any]) -> dict[str, float]:
    """Metrics on the ``test`` split of ``features`` (the names ``train`` reports)."""
    test = _part(features, "test")
    if info["mode"] == "one_class":
        return _one_class_metrics(model, test, info)  # type: ignore[arg-type]
    return _multiclass_metrics(model, test, info)[1]  # type: ignore[arg-type]


# -- persistence -------------------------------------------------------------------------------


def save(trained: Trained, path: Path) -> None:
    path = Path(path)
    write_info(path, trained.info, trained.params)
    torch.save(trained.model.state_dict(), path / MODEL_FILE)


def build(info: dict[str, Any]) -> nn.Module:
    """An untrained network of the shape ``info`` describes."""
    if info["mode"] == "one_class":
        return ConvAutoencoder(info["channels"], info["patch"])
    return DefectNet(len(info["classes"]), info["channels"])


def load(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    path = Path(path)
    info, _ = read_info(path)
    net = build(info)
    net.load_state_dict(torch.load(path / MODEL_FILE, weights_only=True))
    net.eval()
    return net, info
