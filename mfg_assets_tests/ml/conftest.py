"""Small simulated runs shared by the model tests (generated once per session)."""

from __future__ import annotations

import polars as pl
import pytest

from mfg_assets.ml import features
from mfg_assets.sim import SimConfig
from mfg_assets_tests.ml.simdata import simulate_silver

# Sensors only, a faulty plant: faults of every kind within a day.
SENSOR_RUN = SimConfig(seed=6, duration_h=24, sources=("welding", "press"), fault_rate_per_day=1.5)
PROCESS_RUN = SimConfig(seed=5, duration_h=6, sources=("process",))
IMAGE_RUN = SimConfig(seed=5, duration_h=6, sources=("images",), image_period_s=20)


@pytest.fixture(scope="session")
def sensor_silver() -> dict[str, pl.DataFrame]:
    return simulate_silver(SENSOR_RUN)


@pytest.fixture(scope="session")
def sensor_windows(sensor_silver: dict[str, pl.DataFrame]) -> pl.DataFrame:
    return features.sensor_windows(
        sensor_silver["silver.sensor_readings"], sensor_silver["silver.fault_labels"]
    )


@pytest.fixture(scope="session")
def process_silver() -> dict[str, pl.DataFrame]:
    return simulate_silver(PROCESS_RUN)


@pytest.fixture(scope="session")
def process_units(process_silver: dict[str, pl.DataFrame]) -> pl.DataFrame:
    return features.process_units(
        process_silver["silver.process_runs"], process_silver["silver.process_parameters"]
    )


@pytest.fixture(scope="session")
def image_dataset() -> pl.DataFrame:
    return features.image_dataset(simulate_silver(IMAGE_RUN)["silver.inspection_images"])
