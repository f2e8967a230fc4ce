"""A tiny model family with the real families' API, for registry and gate tests.

The model is ``y = slope * x + bias``; ``bias`` is the searched parameter, the slope is
fitted. The last fifth of the rows is the hold-out split, the fifth before it validation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mfg_assets.ml.base import ModelFamily, Trained

FAMILY = ModelFamily(
    name="fake", primary_metric="mae", higher_is_better=False, floors={"mae": 5.0},
    flavor="sklearn",
)
FAILING_BIAS = 999.0  # a candidate whose training raises: the search must go on


def features(n: int = 200, noise: float = 0.5, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = np.arange(n, dtype=float) / 10
    return pl.DataFrame({"x": x, "y": 2.0 * x + 1.0 + rng.normal(0, noise, n)})


def _splits(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    fifth = frame.height // 5
    return frame[: -2 * fifth], frame[-2 * fifth : -fifth], frame[-fifth:]


def search_space(budget: int, seed: int) -> list[dict]:
    return [{"bias": float(b)} for b in (0.0, 1.0, 3.0, FAILING_BIAS)[:budget]]


def _mae(model: dict, frame: pl.DataFrame) -> float:
    pred = model["slope"] * frame["x"].to_numpy() + model["bias"]
    return float(np.abs(pred - frame["y"].to_numpy()).mean())


def train(features: pl.DataFrame, params: dict, seed: int = 0) -> Trained:
    if params["bias"] == FAILING_BIAS:
        raise ValueError("diverged")
    fit, val, holdout = _splits(features)
    x, y = fit["x"].to_numpy(), fit["y"].to_numpy() - params["bias"]
    model = {"slope": float((x * y).sum() / (x * x).sum()), "bias": params["bias"]}
    return Trained(
        model=model,
        params=params,
        metrics={"mae": _mae(model, val)},
        holdout_metrics={"mae": _mae(model, holdout)},
        figures={"residuals": _PNG},
        info={"rows": features.height},
    )


def evaluate(model: Any, features: pl.DataFrame, info: dict) -> dict[str, float]:
    return {"mae": _mae(model, _splits(features)[2])}


def save(trained: Trained, path: Path) -> None:
    (path / "model.json").write_text(json.dumps({"model": trained.model, "info": trained.info}))


def load(path: Path) -> tuple[Any, dict]:
    doc = json.loads((path / "model.json").read_text())
    return doc["model"], doc["info"]


# the smallest valid PNG (1x1, grey)
_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010800000000"
    "3a7e9b550000000a49444154789c6360000000020001e221bc330000000049454e44ae426082"
)
