"""Missing-part detection: a small anchor-free detector (CenterNet-style), trained from scratch.

Input is ``features.assembly_images`` (PNG bytes, part boxes as JSON, a ``split``). The
network (plain torch; no pretrained weights, no torchvision) is a five-layer CNN at output
stride 4 with dilated convolutions for context, and three 1x1 heads: a heatmap per class
(a Gaussian at each part's centre, focal loss), the box size and the sub-cell centre
offset (L1 at the centres). ``Decoded`` wraps it with the decode (3x3 max-pool peaks,
top-K over classes and positions), so the exported ONNX graph itself returns
``[score, class, x0, y0, x1, y1]`` per detection and the edge needs only numpy.

Missing parts: the board's layout (slots of a complete assembly: class, centre, radius) is
learnt from complete training images; a slot no detection of its class fills is missing
(``mfg_assets.edge.detection``, the same code the edge runs). Metrics on a split: mAP at
IoU 0.5 over the classes (``map50``, the primary), and slot-level precision/recall of the
missing decisions where the empty slots are known.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

from mfg_assets.edge import detection as post
from mfg_assets.ml import checkpoint, families
from mfg_assets.ml.base import Trained, read_info, sample_params, torch_session, write_info
from mfg_assets.ml.vision import decode

_SPEC = families.spec("part_detection")  # metrics, floors, feature table: the registry
FAMILY = _SPEC.model
FEATURE_TABLE = _SPEC.feature_table
MODEL_FILE = "model.pt"
STRIDE = 4

DEFAULT_PARAMS: dict[str, Any] = {
    "channels": 12,
    "epochs": 14,
    "batch_size": 32,
    "lr": 4e-3,
    "weight_decay": 1e-4,
    "top_k": 32,
    "size_weight": 1.0,  # of the box-size L1 (in stride units) against the heatmap loss
    "box_score": 0.3,  # boxes reported on the edge
    "quantile": 0.99,  # of complete validation images' scores -> default threshold
    "threads": 2,
}
_GRID: dict[str, list[Any]] = {
    "channels": [8, 12, 16],
    "epochs": [10, 14, 20],
    "lr": [2e-3, 4e-3, 6e-3],
}


def search_space(budget: int, seed: int) -> list[dict[str, Any]]:
    return sample_params(np.random.default_rng(seed), _GRID, DEFAULT_PARAMS, budget)


# -- network -----------------------------------------------------------------------------------


def _conv(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class CenterNet(nn.Module):
    """Backbone at stride 4 -> (heatmap logits per class, size, offset)."""

    def __init__(self, n_classes: int, channels: int = 12) -> None:
        super().__init__()
        c = channels
        self.body = nn.Sequential(
            _conv(1, c, 2), _conv(c, 2 * c, 2), _conv(2 * c, 2 * c),
            _conv(2 * c, 2 * c, dilation=2), _conv(2 * c, 2 * c, dilation=4),
            _conv(2 * c, 2 * c, dilation=2),
        )
        self.heat = nn.Conv2d(2 * c, n_classes, 1)
        self.size = nn.Conv2d(2 * c, 2, 1)
        self.offset = nn.Conv2d(2 * c, 2, 1)
        nn.init.constant_(self.heat.bias, -2.19)  # prior 0.1: focal loss starts stable

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.heat(h), self.size(h), self.offset(h)


class Decoded(nn.Module):
    """The detector with its decode: (n, 1, S, S) -> (n, K, 6) [score, cls, x0, y0, x1, y1]."""

    def __init__(self, net: CenterNet, top_k: int = 32) -> None:
        super().__init__()
        self.net = net
        self.top_k = top_k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, size, offset = self.net(x)
        heat = torch.sigmoid(logits)
        peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat).float()
        n, c, h, w = heat.shape
        scores, index = torch.topk(peaks.reshape(n, c * h * w), self.top_k, dim=1)
        cls = torch.div(index, h * w, rounding_mode="floor")
        pos = index - cls * (h * w)
        ys = torch.div(pos, w, rounding_mode="floor")
        xs = pos - ys * w
        gather = pos.unsqueeze(1).expand(n, 2, self.top_k)
        wh = torch.gather(size.reshape(n, 2, h * w), 2, gather) * STRIDE
        off = torch.gather(offset.reshape(n, 2, h * w), 2, gather)
        cx = (xs.float() + off[:, 0] + 0.5) * STRIDE
        cy = (ys.float() + off[:, 1] + 0.5) * STRIDE
        half_w, half_h = 0.5 * wh[:, 0], 0.5 * wh[:, 1]
        return torch.stack([scores, cls.float(), cx - half_w, cy - half_h, cx + half_w,
                            cy + half_h], dim=2)


# -- targets and loss --------------------------------------------------------------------------


def parse_boxes(text: str | None) -> list[tuple[str, float, float, float, float]]:
    if text is None:
        return []
    return [(str(b[0]), float(b[1]), float(b[2]), float(b[3]), float(b[4]))
            for b in json.loads(text)]


def _targets(boxes: list[list[tuple[str, float, float, float, float]]], classes: list[str],
             size: int, scale: float) -> tuple[np.ndarray, ...]:
    """Gaussian heatmaps, and size/offset targets with their mask, at stride 4."""
    g = size // STRIDE
    heat = np.zeros((len(boxes), len(classes), g, g), np.float32)
    wh = np.zeros((len(boxes), 2, g, g), np.float32)
    off = np.zeros((len(boxes), 2, g, g), np.float32)
    mask = np.zeros((len(boxes), 1, g, g), np.float32)
    yy, xx = np.mgrid[0:g, 0:g].astype(np.float32)
    index = {name: i for i, name in enumerate(classes)}
    for i, image in enumerate(boxes):
        for cls, x0, y0, x1, y1 in image:
            if cls not in index:
                continue
            x0, y0, x1, y1 = (v * scale for v in (x0, y0, x1, y1))
            cx, cy = 0.5 * (x0 + x1) / STRIDE - 0.5, 0.5 * (y0 + y1) / STRIDE - 0.5
            ix, iy = int(np.clip(round(cx), 0, g - 1)), int(np.clip(round(cy), 0, g - 1))
            sigma = max(0.6, min(x1 - x0, y1 - y0) / STRIDE / 4)
            gauss = np.exp(-((xx - ix) ** 2 + (yy - iy) ** 2) / (2 * sigma**2))
            k = index[cls]
            heat[i, k] = np.maximum(heat[i, k], gauss)
            wh[i, :, iy, ix] = ((x1 - x0) / STRIDE, (y1 - y0) / STRIDE)
            off[i, :, iy, ix] = (cx - ix, cy - iy)
            mask[i, 0, iy, ix] = 1.0
    return heat, wh, off, mask


def _focal(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, per object."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    pos_loss = -torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = -torch.log(1 - p) * p**2 * (1 - target) ** 4 * (1 - pos)
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1.0)


# -- data --------------------------------------------------------------------------------------


def _part(frame: pl.DataFrame, split: str) -> pl.DataFrame:
    return frame.filter(pl.col("split") == split)


def image_size(frame: pl.DataFrame) -> int:
    """The most common image side, rounded up to a multiple of the stride."""
    sides = frame.select(pl.max_horizontal("width", "height").alias("side"))
    side = int(sides.get_column("side").mode().sort().item(-1))
    return int(math.ceil(side / STRIDE) * STRIDE)


def _scaled(rows: pl.DataFrame, size: int) -> list[float]:
    """Per row: the factor from its pixels to the model's input."""
    return [size / max(w, h) for w, h in zip(rows.get_column("width"), rows.get_column("height"),
                                             strict=True)]


def learn_layout(rows: pl.DataFrame, classes: list[str], size: int) -> list[dict[str, Any]]:
    """Slots of a complete assembly from training images known (or counted) to be complete.

    Complete: ``missing`` is ``[]``; where it is unknown, an image with the most common
    count of every class. Slots are k-means clusters of the part centres per class, the
    radius covers the spread of a cluster (at least half the part's smaller side).
    """
    images = [[(c, *(v * s for v in box)) for c, *box in parse_boxes(b)] for b, s in
              zip(rows.get_column("boxes"), _scaled(rows, size), strict=True)]
    known = rows.get_column("missing").to_list()
    counts = [tuple(sum(1 for b in im if b[0] == c) for c in classes) for im in images]
    usual = max(set(counts), key=counts.count) if counts else ()
    complete = [im for im, m, n in zip(images, known, counts, strict=True)
                if (m is not None and parse_boxes(m) == []) or (m is None and n == usual)]
    layout = []
    for cls in classes:
        parts = [[b for b in im if b[0] == cls] for im in complete]
        k = max((len(p) for p in parts), default=0)
        seed = next((p for p in parts if len(p) == k), [])
        if k == 0:
            continue
        centres = np.array([[0.5 * (b[1] + b[3]), 0.5 * (b[2] + b[4])] for b in seed])
        points = np.array([[0.5 * (b[1] + b[3]), 0.5 * (b[2] + b[4]), b[3] - b[1], b[4] - b[2]]
                           for p in parts for b in p])
        for _ in range(10):
            nearest = np.argmin(np.linalg.norm(points[:, None, :2] - centres[None], axis=2), 1)
            centres = np.array([points[nearest == j, :2].mean(0) if (nearest == j).any()
                                else centres[j] for j in range(k)])
        for j in range(k):
            mine = points[nearest == j]
            spread = float(np.sqrt(((mine[:, :2] - centres[j]) ** 2).sum(1).mean()))
            half = 0.5 * float(np.median(np.minimum(mine[:, 2], mine[:, 3])))
            layout.append({"cls": cls, "cx": float(centres[j, 0]), "cy": float(centres[j, 1]),
                           "radius": max(half, 3.0 * spread, 3.0)})
    return sorted(layout, key=lambda s: (s["cy"], s["cx"]))


# -- training ----------------------------------------------------------------------------------


def train(features: pl.DataFrame, params: dict[str, Any], seed: int = 0) -> Trained:
    p = {**DEFAULT_PARAMS, **params}
    size = image_size(features)
    rows = _part(features, "train")
    boxes = [parse_boxes(b) for b in rows.get_column("boxes")]
    classes = sorted({b[0] for image in boxes for b in image})
    if not classes:
        raise ValueError("part_detection needs training images with boxes")
    with torch_session(seed, p["threads"]):
        net = CenterNet(len(classes), p["channels"])
        x = torch.from_numpy(decode(rows.get_column("png").to_list(), size))
        targets = [torch.from_numpy(t) for t in _targets_scaled(rows, boxes, classes, size)]
        optimiser = torch.optim.AdamW(net.parameters(), lr=p["lr"],
                                      weight_decay=p["weight_decay"])
        steps = p["epochs"] * math.ceil(len(x) / p["batch_size"])
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=p["lr"],
                                                       total_steps=steps)
        order_seed = int(torch.initial_seed()) % (2**31)  # the batch order's generator
        generator = torch.Generator().manual_seed(order_seed)
        net.train()
        # inside a checkpoint scope (a Dagster run) each epoch is checkpointed and a retry
        # of the same run resumes where the last one stopped (ml/checkpoint.py)
        what = {"family": FAMILY.name, "params": {k: v for k, v in p.items() if k != "threads"},
                "seed": order_seed, "rows": len(x), "size": size, "classes": classes}
        with checkpoint.resumable(what, p["epochs"]) as ckpt:
            for epoch in range(ckpt.restore(net, optimiser, [generator], schedule), p["epochs"]):
                _epoch(net, optimiser, schedule, generator, x, targets, p)
                ckpt.epoch_done(epoch + 1, net, optimiser, [generator], schedule)
        net.eval()
    info: dict[str, Any] = {
        "classes": classes,
        "image_size": size,
        "channels": p["channels"],
        "top_k": p["top_k"],
        "box_score": p["box_score"],
        "layout": learn_layout(rows, classes, size),
        "normalisation": "per-image standardisation",
        "n_train": len(x),
        "split": {"method": "column", "column": "split"},
        "feature_table": FEATURE_TABLE,
    }
    model = Decoded(net, p["top_k"]).eval()
    validation = _part(features, "validation")
    info["threshold"] = _default_threshold(model, validation, info, p["quantile"])
    metrics = metrics_on(model, validation, info)
    holdout = metrics_on(model, _part(features, "test"), info)
    return Trained(model, p, metrics, holdout, {}, info)


def _epoch(net: CenterNet, optimiser: torch.optim.Optimizer,
           schedule: torch.optim.lr_scheduler.LRScheduler, generator: torch.Generator,
           x: torch.Tensor, targets: list[torch.Tensor], p: dict[str, Any]) -> None:
    """One pass over the training images in the generator's order."""
    order = torch.randperm(len(x), generator=generator)
    for start in range(0, len(x), p["batch_size"]):
        idx = order[start : start + p["batch_size"]]
        heat, wh, off, mask = (t[idx] for t in targets)
        logits, size_out, off_out = net(x[idx])
        n_obj = mask.sum().clamp(min=1.0)
        loss = (_focal(logits, heat)
                + p["size_weight"] * F.l1_loss(size_out * mask, wh, reduction="sum") / n_obj
                + (F.l1_loss(off_out * mask, off, reduction="sum") / n_obj))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()


def _targets_scaled(rows: pl.DataFrame, boxes: list, classes: list[str], size: int) -> tuple:
    scales = _scaled(rows, size)
    parts = [_targets([b], classes, size, s) for b, s in zip(boxes, scales, strict=True)]
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(4))


def detect(model: Decoded, png: list[bytes], size: int) -> np.ndarray:
    """(n, K, 6) detections in model-input pixels, in batches."""
    out = []
    with torch.no_grad():
        for start in range(0, len(png), 128):
            out.append(model(torch.from_numpy(decode(png[start : start + 128], size))).numpy())
    return np.concatenate(out) if out else np.empty((0, model.top_k, 6), np.float32)


def _default_threshold(model: Decoded, rows: pl.DataFrame, info: dict[str, Any],
                       quantile: float) -> float:
    complete = rows.filter(pl.col("missing") == "[]")
    if complete.height == 0:
        return 0.5
    dets = detect(model, complete.get_column("png").to_list(), info["image_size"])
    scores = post.image_scores(dets, info["classes"], info["layout"])
    return float(min(0.95, np.quantile(scores, quantile) + 0.02))


# -- metrics -----------------------------------------------------------------------------------


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a`` (n, 4) with ``b`` (m, 4) -> (n, m)."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


def average_precision(detections: list[np.ndarray], truths: list[np.ndarray],
                      iou_threshold: float = 0.5) -> float:
    """AP of one class (all-point interpolated, as VOC 2010+): per image, detections
    (d, 5) [score, x0, y0, x1, y1] and ground-truth boxes (t, 4); each truth matches at most
    one detection, greedily by score. NaN when the class has no ground truth."""
    n_truth = sum(len(t) for t in truths)
    if n_truth == 0:
        return math.nan
    scored = []  # (score, is true positive)
    for dets, gts in zip(detections, truths, strict=True):
        order = np.argsort(-dets[:, 0], kind="stable")
        used = np.zeros(len(gts), bool)
        overlaps = iou(dets[order, 1:5], gts) if len(gts) and len(dets) else None
        for rank, d in enumerate(order):
            hit = False
            if overlaps is not None:
                candidates = np.where(~used & (overlaps[rank] >= iou_threshold))[0]
                if len(candidates):
                    used[candidates[np.argmax(overlaps[rank, candidates])]] = True
                    hit = True
            scored.append((float(dets[d, 0]), hit))
    if not scored:
        return 0.0
    scored.sort(key=lambda s: -s[0])
    tp = np.cumsum([s[1] for s in scored])
    fp = np.cumsum([not s[1] for s in scored])
    recall = tp / n_truth
    precision = tp / np.maximum(tp + fp, 1)
    # precision envelope, then the area under the recall steps
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float((steps * envelope).sum())


def mean_average_precision(dets: np.ndarray, truths: list[list[tuple]], classes: list[str],
                           iou_threshold: float = 0.5, min_score: float = 0.01) -> float:
    """mAP over the classes that occur in ``truths``; ``dets`` (n, K, 6)."""
    aps = []
    for k, cls in enumerate(classes):
        per_image_dets, per_image_truths = [], []
        for image_dets, image_truth in zip(dets, truths, strict=True):
            keep = (np.rint(image_dets[:, 1]) == k) & (image_dets[:, 0] >= min_score)
            per_image_dets.append(image_dets[keep][:, [0, 2, 3, 4, 5]])
            per_image_truths.append(np.array([b[1:] for b in image_truth if b[0] == cls],
                                             dtype=np.float64).reshape(-1, 4))
        ap = average_precision(per_image_dets, per_image_truths, iou_threshold)
        if not math.isnan(ap):
            aps.append(ap)
    return float(np.mean(aps)) if aps else math.nan


def metrics_on(model: Decoded, rows: pl.DataFrame, info: dict[str, Any]) -> dict[str, float]:
    """map50, and slot-level missing precision/recall where the empty slots are known."""
    if rows.height == 0:
        return {"map50": math.nan}
    size = info["image_size"]
    dets = detect(model, rows.get_column("png").to_list(), size)
    truths = [[(c, *(v * s for v in box)) for c, *box in parse_boxes(b)] for b, s in
              zip(rows.get_column("boxes"), _scaled(rows, size), strict=True)]
    metrics = {"map50": mean_average_precision(dets, truths, info["classes"])}
    tp = fp = fn = 0
    for image_dets, image_truth, missing in zip(dets, truths, rows.get_column("missing"),
                                                strict=True):
        if missing is None:
            continue
        decided = post.decide(image_dets, info["classes"], info["layout"], info["threshold"],
                              info["box_score"])
        said = {m["slot"] for m in decided["missing"]}
        present = _filled_slots(image_truth, info["layout"])
        empty = set(range(len(info["layout"]))) - present
        tp += len(said & empty)
        fp += len(said - empty)
        fn += len(empty - said)
    if tp + fp + fn:
        metrics["missing_precision"] = tp / (tp + fp) if tp + fp else math.nan
        metrics["missing_recall"] = tp / (tp + fn) if tp + fn else math.nan
    return metrics


def _filled_slots(truth: list[tuple], layout: list[dict[str, Any]]) -> set[int]:
    filled = set()
    for cls, x0, y0, x1, y1 in truth:
        cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
        for k, slot in enumerate(layout):
            if slot["cls"] == cls and math.hypot(cx - slot["cx"], cy - slot["cy"]) <= slot[
                    "radius"]:
                filled.add(k)
    return filled


def evaluate(model: Decoded, features: pl.DataFrame, info: dict[str, Any]) -> dict[str, float]:
    """Metrics on the ``test`` split of ``features`` (the names ``train`` reports)."""
    return metrics_on(model, _part(features, "test"), info)


# -- persistence -------------------------------------------------------------------------------


def save(trained: Trained, path: Path) -> None:
    path = Path(path)
    write_info(path, trained.info, trained.params)
    torch.save(trained.model.state_dict(), path / MODEL_FILE)


def build(info: dict[str, Any]) -> Decoded:
    """An untrained detector (with its decode) of the shape ``info`` describes."""
    return Decoded(CenterNet(len(info["classes"]), info["channels"]), info["top_k"])


def load(path: Path) -> tuple[Decoded, dict[str, Any]]:
    path = Path(path)
    info, _ = read_info(path)
    model = build(info)
    model.load_state_dict(torch.load(path / MODEL_FILE, weights_only=True))
    model.eval()
    return model, info
