"""Visual inspection: a small CNN on grayscale images, or a one-class autoencoder.

Input is ``features.image_dataset`` (PNG bytes with a ``split`` column). Image size and
class names come from the data. Each image is standardised on its own (zero mean, unit
variance) before the network sees it: cameras differ in brightness and contrast (and
lighting drifts), while defects are local shape, so per-image normalisation removes
what should not matter.

``params["mode"]``:

- ``"multiclass"`` (default): a four-block CNN with global average + max pooling (max
  keeps a thin scratch from being averaged away). Images are trained at a working
  resolution (``image_size``; default the smallest side in the data capped at 128 px),
  decoded and resized once per dataset (threads; cached in memory and under
  ``<data dir>/cache/vision`` by content hash). The loss weighs classes by inverse
  frequency; training flips and rotates by multiples of 90 degrees (defects have no
  preferred orientation) and changes brightness/contrast a little; it logs every epoch and
  keeps the epoch with the best validation balanced accuracy (early stopping). The
  *normal* class (``ok`` or a label like it, else the most frequent) against all others
  is the defect decision: an image is a defect when 1 - P(normal) reaches a threshold
  chosen on validation for ``target_recall`` of defects (never above 0.5). Metrics:
  accuracy, per-class recall, ``balanced_accuracy`` and ``recall_defect`` (defect vs
  normal), ``precision_defect``, ``auroc``; and a confusion matrix.
- ``"one_class"``: for lines without defect labels. A convolutional autoencoder learns
  ``ok`` images only (the ``normal_class``); an image is a defect when its largest local
  reconstruction error (mean squared error over 8x8 patches) exceeds a high quantile of
  the errors of ``ok`` validation images. Metrics: precision / recall / f1 / auroc of
  defect vs ok.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import logging
import math
import os
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import confusion_matrix
from torch import nn

from mfg_assets.ml import baselines, checkpoint, families, plots
from mfg_assets.ml.base import (
    SPLITS,
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
log = logging.getLogger(__name__)

DEFAULT_PARAMS: dict[str, Any] = {
    "mode": "multiclass",
    # Working resolution: None = the data's smallest image side, capped at AUTO_SIZE_CAP.
    # Defects of a few pixels at 300 px survive 128 px; training at full size is ~5x slower.
    "image_size": None,
    "channels": 8,  # first block; doubled per block
    "epochs": 24,  # at most: early stopping on validation balanced accuracy
    "patience": 5,  # epochs without improvement before stopping
    # Never stop before: on subtle defects the loss sits at chance for a few hundred steps,
    # then falls quickly (measured on sim/hard_images: about 300 steps).
    "min_epochs": 8,
    # ... and never while the model is still at chance: the training loss has not yet fallen
    # below this fraction of the first epoch's (how long that lasts varies with the seed and
    # the thread count; a run stopped there promotes nothing better than a coin).
    "learning_loss_ratio": 0.9,
    "batch_size": 32,  # more steps per epoch: the same work reaches that point sooner
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "augment": True,  # flips, 90-degree rotations, small brightness/contrast changes
    "class_weights": True,  # inverse class frequency in the loss (defects are the minority)
    "target_recall": 0.9,  # defect recall the validation-chosen threshold reaches (None: argmax)
    "normal_class": None,  # None: "ok" (or a label like it), else the most frequent class
    "quantile": 0.99,  # one_class: of normal validation errors -> threshold
    "patch": 8,  # one_class: error pooling window
    "threads": None,  # None: the cores this process may use that are idle (default_threads)
}
_GRID: dict[str, list[Any]] = {
    "image_size": [None, 96, 160],
    "channels": [8, 12, 16],
    "lr": [1e-3, 3e-3, 5e-3],
    "weight_decay": [0.0, 1e-4, 1e-3],
}
AUTO_SIZE_CAP = 128
_NORMAL_NAMES = ("ok", "good", "pass", "normal")


def search_space(budget: int, seed: int) -> list[dict[str, Any]]:
    return sample_params(np.random.default_rng(seed), _GRID, DEFAULT_PARAMS, budget)


def cpu_threads() -> int:
    """CPU cores this process may run on (its affinity, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Torch threads for training: the cores this process may use, less what other work
    already keeps busy (1-minute load average). OpenMP threads spin while they wait for
    each other; on a busy small machine a second thread then slows a step down several
    times over (measured: 5x on 2 cores under a load of 14) and shows up as system time."""
    cores = cpu_threads()
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, round(cores - busy + 1)))


def _quiet_threads(threads: int) -> None:
    """One inter-op thread: intra-op threads on every core plus an inter-op pool of as many
    again oversubscribes a small machine (spinning threads show up as system time)."""
    with contextlib.suppress(RuntimeError):  # already set, or parallel work already ran
        torch.set_num_interop_threads(1)
    # torch reads these once at import (its own pool follows set_num_threads); they bound
    # the OpenMP/MKL pools of any worker process started from here.
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(threads))


# -- images ------------------------------------------------------------------------------------


def _resize_one(data: bytes, size: int) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    img.draft("L", (size, size))  # JPEG: decode at a reduced scale straight away
    img = img.convert("L")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def pixels(png: list[bytes], size: int, threads: int | None = None) -> np.ndarray:
    """Image bytes -> uint8 (n, size, size), decoded and resized in parallel threads
    (Pillow releases the GIL while it decodes and resizes)."""
    out = np.empty((len(png), size, size), dtype=np.uint8)
    if not png:
        return out
    workers = threads or cpu_threads()
    if workers == 1 or len(png) < 32:
        for i, data in enumerate(png):
            out[i] = _resize_one(data, size)
        return out
    with ThreadPoolExecutor(workers) as pool:
        for i, img in enumerate(pool.map(_resize_one, png, [size] * len(png), chunksize=16)):
            out[i] = img
    return out


def standardise(raw: np.ndarray) -> np.ndarray:
    """uint8 (n, size, size) -> float32 (n, 1, size, size), each image to zero mean and
    unit variance (what the edge does too, see ``edge.predictor.normalise``)."""
    x = raw.astype(np.float32)[:, None]
    mean = x.mean(axis=(2, 3), keepdims=True)
    std = x.std(axis=(2, 3), keepdims=True)
    x -= mean
    x /= np.maximum(std, 1.0)
    return x


def decode(png: list[bytes], size: int) -> np.ndarray:
    """PNG bytes -> float32 array (n, 1, size, size), each image standardised."""
    return standardise(pixels(png, size))


# Decoded images of the last datasets, so the trials of one search decode once: key ->
# uint8 pixels. Bounded (a few hundred MB at most for thousands of 128 px images).
_MEMO: OrderedDict[str, np.ndarray] = OrderedDict()
_MEMO_ENTRIES = 3


def cached_pixels(png: list[bytes], size: int, cache_dir: Path | None = None) -> np.ndarray:
    """``pixels`` once per content: in memory for this process and, with ``cache_dir``, in
    an ``.npy`` file named by the hash of the image bytes and the size."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str(size).encode())
    for data in png:
        h.update(hashlib.blake2b(data, digest_size=16).digest())
    key = h.hexdigest()
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key]
    file = cache_dir / f"{key}.npy" if cache_dir is not None else None
    raw = None
    if file is not None and file.is_file():
        try:
            raw = np.load(file)
        except (OSError, ValueError):  # a torn write: decode again
            raw = None
        if raw is not None and raw.shape != (len(png), size, size):
            raw = None
    if raw is None:
        raw = pixels(png, size)
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, raw)
            tmp.replace(file)  # atomic: a reader never sees half a file
    _MEMO[key] = raw
    while len(_MEMO) > _MEMO_ENTRIES:
        _MEMO.popitem(last=False)
    return raw


def default_cache_dir() -> Path | None:
    """``<data dir>/cache/vision`` (None when settings cannot be read)."""
    try:
        from mfg_assets.settings import get_settings

        return Path(get_settings().data_dir) / "cache" / "vision"
    except Exception:  # settings are optional for plain training
        return None


def image_size(frame: pl.DataFrame) -> int:
    """The most common image side in the data (others are resized to it)."""
    sides = frame.select(pl.max_horizontal("width", "height").alias("side"))
    return int(sides.get_column("side").mode().sort().item(-1))


def working_size(frame: pl.DataFrame, requested: int | None = None) -> int:
    """The side images are trained at: ``requested``, else the smallest side in the data
    capped at ``AUTO_SIZE_CAP`` (never upsampled beyond what the data has)."""
    if requested:
        return int(requested)
    smallest = frame.select(pl.min_horizontal("width", "height").min()).item()
    if smallest is None:
        return AUTO_SIZE_CAP
    return int(min(smallest, AUTO_SIZE_CAP))


def normal_class(classes: list[str], labels: pl.Series, requested: str | None = None) -> str:
    """The good-part class: ``requested``, else "ok"-like by name, else the most frequent."""
    if requested:
        return requested
    for name in _NORMAL_NAMES:
        for c in classes:
            if c.lower() == name or c.lower().startswith(f"{name}_"):
                return c
    return str(labels.drop_nulls().mode().sort().item(0))


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Inspection-safe changes: defects have no preferred orientation, and lighting varies
    a little between cameras (after per-image standardisation: a small gain and offset)."""
    k = int(torch.randint(0, 4, (1,), generator=generator))
    x = torch.rot90(x, k, dims=(2, 3))
    flip = torch.rand(len(x), generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], torch.flip(x, dims=(3,)), x)
    gain = 1.0 + 0.1 * (torch.rand(len(x), 1, 1, 1, generator=generator) - 0.5) * 2
    shift = 0.1 * (torch.rand(len(x), 1, 1, 1, generator=generator) - 0.5) * 2
    return x * gain + shift


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
    if p["mode"] not in ("multiclass", "one_class"):
        raise ValueError(f"unknown vision mode {p['mode']!r}: multiclass or one_class")
    threads = int(p["threads"] or default_threads())
    _quiet_threads(threads)
    size = working_size(features, p["image_size"])
    with torch_session(seed, threads):
        if p["mode"] == "one_class":
            labels = features.get_column("label")
            classes = sorted(labels.drop_nulls().unique().to_list())
            p["normal_class"] = normal_class(classes, labels, p["normal_class"])
            p["epochs"] = params.get("epochs", 8)  # no early stopping here: a fixed count
            return _train_one_class(features, p, size)
        return _train_multiclass(features, p, size)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _split_pixels(
    features: pl.DataFrame, size: int, disk_cache: bool
) -> dict[str, tuple[pl.DataFrame, np.ndarray]]:
    """rows and uint8 pixels of each split, decoded once for all splits (and all trials)."""
    parts = {split: _part(features, split) for split in SPLITS}
    every = pl.concat(list(parts.values()))
    cache_dir = default_cache_dir() if disk_cache else None
    raw = cached_pixels(every.get_column("png").to_list(), size, cache_dir)
    out, start = {}, 0
    for split, rows in parts.items():
        out[split] = (rows, raw[start : start + rows.height])
        start += rows.height
    return out


def _train_multiclass(features: pl.DataFrame, p: dict[str, Any], size: int) -> Trained:
    began = time.monotonic()
    data = _split_pixels(features, size, bool(p.get("disk_cache", True)))
    train_rows, train_raw = data["train"]
    classes = sorted(train_rows.get_column("label").unique().to_list())
    if len(classes) < 2:
        raise ValueError(f"multiclass needs two or more labels, got {classes}")
    normal = normal_class(classes, train_rows.get_column("label"), p["normal_class"])
    if normal not in classes:
        raise ValueError(f"normal class {normal!r} is not among the training labels {classes}")
    decoded = time.monotonic() - began
    x = torch.from_numpy(standardise(train_raw))
    y = torch.from_numpy(_class_index(train_rows, classes))
    val_rows, val_raw = data["validation"]
    x_val = standardise(val_raw)
    y_val = _class_index(val_rows, classes)
    normal_index = classes.index(normal)
    net = DefectNet(len(classes), p["channels"])
    optimiser = torch.optim.AdamW(net.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    steps = p["epochs"] * math.ceil(len(x) / p["batch_size"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=p["lr"], total_steps=steps, pct_start=0.15
    )
    weight = _class_weights(y, len(classes)) if p["class_weights"] else None
    seed = int(torch.initial_seed()) % (2**31)
    generator = torch.Generator().manual_seed(seed)
    log.info("vision: %d training images at %d px (%s), %d validation; decoded in %.1fs",
             len(x), size, ", ".join(classes), len(x_val), decoded)
    # Early stopping's state travels in the checkpoint: a resumed loop stops where an
    # uninterrupted one would, and one that had stopped is not trained further.
    state: dict[str, Any] = {"best": -math.inf, "best_state": None, "best_epoch": 0,
                             "stale": 0, "first_loss": math.nan, "learning": False,
                             "stopped": False}
    what = {"family": FAMILY.name, "mode": "multiclass", "params": _unit_params(p),
            "seed": seed, "rows": len(x), "size": size, "classes": classes}
    with checkpoint.resumable(what, p["epochs"]) as ckpt:
        epoch = done = ckpt.restore(net, optimiser, [generator], schedule)
        state.update(ckpt.loop)
        last = done if state["stopped"] else p["epochs"]  # stopped early: nothing left
        for epoch in range(done + 1, last + 1):
            started = time.monotonic()
            net.train()
            total = 0.0
            for idx in _batches(len(x), p["batch_size"], generator):
                batch = _augment(x[idx], generator) if p["augment"] else x[idx]
                loss = F.cross_entropy(net(batch), y[idx], weight=weight)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                total += float(loss.detach()) * len(idx)
            net.eval()
            mean_loss = total / max(len(x), 1)
            state["first_loss"] = mean_loss if epoch == 1 else state["first_loss"]
            state["learning"] = (state["learning"]
                                 or mean_loss < p["learning_loss_ratio"] * state["first_loss"])
            probs = _probabilities(net, x_val)
            score = _defect_metrics(y_val, _decide(probs, normal_index, 0.5), probs,
                                    normal_index)
            balanced = score["balanced_accuracy"]
            log.info("vision epoch %d/%d: loss %.4f, validation balanced accuracy %.3f, "
                     "defect recall %.3f (%.1fs)", epoch, p["epochs"], mean_loss,
                     balanced, score["recall_defect"], time.monotonic() - started)
            _early_stopping(state, balanced, epoch, net, p)
            ckpt.epoch_done(epoch, net, optimiser, [generator], schedule, state,
                            final=state["stopped"])
            if state["stopped"]:
                log.info("vision: stopping early, no better than epoch %d for %d epochs",
                         state["best_epoch"], state["stale"])
                break
    best_epoch = state["best_epoch"]
    if state["best_state"] is not None:
        net.load_state_dict(state["best_state"])
    net.eval()
    probs = _probabilities(net, x_val)
    threshold = defect_threshold(1.0 - probs[:, normal_index], y_val != normal_index,
                                 p["target_recall"])
    info = {
        "mode": "multiclass",
        "classes": classes,
        "normal_class": normal,
        "defect_threshold": threshold,
        "target_recall": p["target_recall"],
        "image_size": size,
        "channels": p["channels"],
        "normalisation": "per-image standardisation",
        "n_train": len(x),
        "threads": torch.get_num_threads(),
        "epochs_run": epoch,
        "best_epoch": best_epoch,
        "train_seconds": round(time.monotonic() - began, 1),
        "split": {"method": "column", "column": "split"},
        "feature_table": FEATURE_TABLE,
    }
    matrix, metrics = _multiclass_metrics(net, val_rows, info, val_raw)
    test_rows, test_raw = data["test"]
    _, holdout = _multiclass_metrics(net, test_rows, info, test_raw)
    holdout.update(_baseline_metrics(train_rows, train_raw, test_rows, test_raw, info))
    log.info("vision: done in %.0fs; validation %s", info["train_seconds"],
             ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if not k.startswith("recall_")
                       or k == "recall_defect"))
    figures = {}
    if matrix is not None:
        figures["confusion_matrix.png"] = plots.confusion_matrix(
            matrix, classes, "Validation images"
        )
    return Trained(net, p, metrics, holdout, figures, info)


def _unit_params(p: dict[str, Any]) -> dict[str, Any]:
    """The params that make a training loop distinct: not how many threads run it nor
    where decoded images are cached (a retry on another machine resumes all the same)."""
    return {k: v for k, v in p.items() if k not in ("threads", "disk_cache")}


def _early_stopping(state: dict[str, Any], balanced: float, epoch: int, net: nn.Module,
                    p: dict[str, Any]) -> None:
    """Keep the best epoch's weights; stop after ``patience`` epochs without a better
    validation balanced accuracy, never before ``min_epochs`` nor while still at chance."""
    if math.isnan(balanced) or balanced > state["best"]:
        state.update(best=balanced, best_epoch=epoch, stale=0,
                     best_state=copy.deepcopy(net.state_dict()))
        return
    state["stale"] += 1
    state["stopped"] = bool(state["stale"] >= p["patience"] and epoch >= p["min_epochs"]
                            and state["learning"])


def _class_weights(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """n / (k * count) per class: each class weighs as much in the loss as any other."""
    counts = torch.bincount(y[y >= 0], minlength=n_classes).clamp(min=1).float()
    return counts.sum() / (n_classes * counts)


def _class_index(rows: pl.DataFrame, classes: list[str]) -> np.ndarray:
    lookup = {name: i for i, name in enumerate(classes)}
    return np.array([lookup.get(label, -1) for label in rows.get_column("label").to_list()],
                    dtype=np.int64)


def _probabilities(net: nn.Module, x: np.ndarray) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in range(0, len(x), 256):
            logits = net(torch.from_numpy(np.ascontiguousarray(x[start : start + 256])))
            out.append(torch.softmax(logits, dim=1).numpy())
    return np.concatenate(out) if out else np.empty((0, 0), dtype=np.float32)


def defect_threshold(score: np.ndarray, defect: np.ndarray, target: float | None) -> float:
    """The highest threshold on the defect score (1 - P(normal)) whose validation defect
    recall reaches ``target``; never above 0.5, so a model that already finds more defects
    keeps doing so. 0.5 when there is no target or no defect to measure it on."""
    defect = np.asarray(defect, dtype=bool)
    if target is None or not defect.any():
        return 0.5
    ranked = np.sort(np.asarray(score)[defect])[::-1]
    k = max(1, math.ceil(float(target) * len(ranked)))
    return float(min(0.5, ranked[min(k, len(ranked)) - 1]))


def _decide(probs: np.ndarray, normal_index: int, threshold: float) -> np.ndarray:
    """A defect when 1 - P(normal) >= threshold (then the likeliest defect class)."""
    if len(probs) == 0:
        return np.empty(0, dtype=np.int64)
    others = probs.copy()
    others[:, normal_index] = -1.0
    defect = 1.0 - probs[:, normal_index] >= threshold
    return np.where(defect, others.argmax(axis=1), normal_index)


def predict_classes(net: DefectNet, png: list[bytes], info: dict[str, Any]) -> np.ndarray:
    """Class index per image, with the decision threshold chosen at training."""
    probs = _probabilities(net, decode(png, info["image_size"]))
    return _decision(probs, info)


def _decision(probs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    if "normal_class" not in info or info["normal_class"] not in info["classes"]:
        return probs.argmax(axis=1) if len(probs) else np.empty(0, dtype=np.int64)
    normal_index = info["classes"].index(info["normal_class"])
    return _decide(probs, normal_index, float(info.get("defect_threshold", 0.5)))


def _defect_metrics(
    truth: np.ndarray, predicted: np.ndarray, probs: np.ndarray, normal_index: int
) -> dict[str, float]:
    """Defect (any class but the normal one) vs normal: recall, precision, balanced
    accuracy (mean of defect recall and normal recall), auroc of 1 - P(normal)."""
    known = truth >= 0
    truth, predicted, probs = truth[known], predicted[known], probs[known]
    is_defect = truth != normal_index
    called = predicted != normal_index
    recall = float(called[is_defect].mean()) if is_defect.any() else math.nan
    specificity = float((~called[~is_defect]).mean()) if (~is_defect).any() else math.nan
    out = {
        "recall_defect": recall,
        "precision_defect": float(is_defect[called].mean()) if called.any() else math.nan,
        "balanced_accuracy": (recall + specificity) / 2,
        "auroc": math.nan,
    }
    if is_defect.any() and (~is_defect).any():
        from sklearn.metrics import roc_auc_score

        out["auroc"] = float(roc_auc_score(is_defect, 1.0 - probs[:, normal_index]))
    return out


def _multiclass_metrics(
    net: DefectNet, rows: pl.DataFrame, info: dict[str, Any], raw: np.ndarray | None = None
) -> tuple[np.ndarray | None, dict[str, float]]:
    """accuracy, recall per class, and defect-vs-normal metrics (``_defect_metrics``)."""
    classes = info["classes"]
    if rows.height == 0:
        nan = math.nan
        return None, {"accuracy": nan, "balanced_accuracy": nan, "recall_defect": nan}
    truth = _class_index(rows, classes)
    if raw is None:
        raw = cached_pixels(rows.get_column("png").to_list(), info["image_size"])
    probs = _probabilities(net, standardise(raw))
    predicted = _decision(probs, info)
    metrics = {"accuracy": float((truth == predicted).mean())}
    for i, name in enumerate(classes):
        mine = truth == i
        metrics[f"recall_{name}"] = float((predicted[mine] == i).mean()) if mine.any() else math.nan
    if info.get("normal_class") in classes:
        normal_index = classes.index(info["normal_class"])
        metrics.update(_defect_metrics(truth, predicted, probs, normal_index))
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
    seed = int(torch.initial_seed()) % (2**31)
    generator = torch.Generator().manual_seed(seed)
    net.train()
    what = {"family": FAMILY.name, "mode": "one_class", "params": _unit_params(p),
            "seed": seed, "rows": len(x), "size": size}
    with checkpoint.resumable(what, p["epochs"]) as ckpt:
        for epoch in range(ckpt.restore(net, optimiser, [generator]), p["epochs"]):
            for idx in _batches(len(x), p["batch_size"], generator):
                batch = _augment(x[idx], generator) if p["augment"] else x[idx]
                loss = ((net.reconstruct(batch) - batch) ** 2).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            ckpt.epoch_done(epoch + 1, net, optimiser, [generator])
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


# What the gate compares with the baselines (``baseline.<name>.<metric>``): accuracy is
# not among them, "always ok" scores 0.9 of it on a line with 10 % defects.
BASELINE_METRICS = ("balanced_accuracy", "recall_defect")


def _baseline_metrics(train_rows: pl.DataFrame, train_raw: np.ndarray | None,
                      test_rows: pl.DataFrame, test_raw: np.ndarray | None,
                      info: dict[str, Any]) -> dict[str, float]:
    """``baseline.<majority|logistic>.<metric>`` on the test rows: the majority class and
    a logistic regression on downscaled standardised pixels, fitted on the training rows
    of the same frame (the gate judges the model against them on the same rows)."""
    classes, normal = info["classes"], info.get("normal_class")
    if normal not in classes or test_rows.height == 0 or train_rows.height < 2:
        return {}
    size = info["image_size"]
    if train_raw is None:
        train_raw = cached_pixels(train_rows.get_column("png").to_list(), size)
    if test_raw is None:
        test_raw = cached_pixels(test_rows.get_column("png").to_list(), size)
    y_fit = _class_index(train_rows, classes)
    known = y_fit >= 0
    if known.sum() < 2:
        return {}
    x_fit = baselines.downscale(standardise(train_raw))[known]
    truth = _class_index(test_rows, classes)
    normal_index = classes.index(normal)
    out = {}
    guesses = baselines.classifier_predictions(
        x_fit, y_fit[known], baselines.downscale(standardise(test_raw)))
    for name, predicted in guesses.items():
        one_hot = np.eye(len(classes), dtype=np.float32)[predicted]  # auroc is not kept
        found = _defect_metrics(truth, predicted, one_hot, normal_index)
        out.update({baselines.key(name, m): found[m] for m in BASELINE_METRICS})
    return out


def evaluate(model: nn.Module, features: pl.DataFrame, info: dict[str, Any]) -> dict[str, float]:
    """Metrics on the ``test`` split of ``features`` (the names ``train`` reports), with
    the baselines' (multiclass) fitted on the ``train`` split of the same frame."""
    test = _part(features, "test")
    if info["mode"] == "one_class":
        return _one_class_metrics(model, test, info)  # type: ignore[arg-type]
    metrics = _multiclass_metrics(model, test, info)[1]  # type: ignore[arg-type]
    metrics.update(_baseline_metrics(_part(features, "train"), None, test, None, info))
    return metrics


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
