"""One small part detector per test session (ml and edge tests share it): a few epochs on
64 px boards, seconds of training; the full-size run is the slow test's."""

from __future__ import annotations

from functools import cache

import polars as pl

from mfg_assets.ml.base import Trained
from mfg_assets.sim import assemblies

SMALL_PARAMS = {"channels": 8, "epochs": 8, "batch_size": 16, "lr": 6e-3}


@cache
def small_boards() -> pl.DataFrame:
    return assemblies.dataset(240, seed=7, size=64, p_missing=0.15)


@cache
def small_detector() -> Trained:
    from mfg_assets.ml import detection

    return detection.train(small_boards(), SMALL_PARAMS, seed=0)
