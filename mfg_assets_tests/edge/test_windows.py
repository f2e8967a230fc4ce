"""Edge window features equal the training side's (ml.features.sensor_windows)."""

from __future__ import annotations

import numpy as np
import polars as pl

from mfg_assets.edge.windows import RollingWindows, WindowSpec
from mfg_assets.ml.features import feature_columns, sensor_windows
from mfg_assets.sim import SimConfig
from mfg_assets.sim.welding import welder_messages


def _welder_messages(hours: float = 1.0):
    config = SimConfig(duration_h=hours, sources=("welding",), fault_rate_per_day=3.0, seed=3)
    welder = config.plant.welders[1]
    return welder.machine_id, list(welder_messages(config, welder))


def test_edge_windows_equal_training_features():
    machine, messages = _welder_messages()
    long = pl.DataFrame(
        [
            {"machine_id": machine, "machine_type": "welder", "sensor": r["sensor"],
             "ts": m.doc["timestamp"], "value": r["value"]}
            for m in messages
            for r in m.doc["readings"]
        ]
    ).with_columns(pl.from_epoch("ts", time_unit="ms").dt.replace_time_zone("UTC"))
    training = sensor_windows(long, every="10m")
    columns = feature_columns(training)
    windows = RollingWindows(WindowSpec("welder", 600, tuple(columns), min_samples=30))
    done = [
        w for m in messages
        if (w := windows.add(machine, "welder", m.doc["timestamp"],
                             {r["sensor"]: r["value"] for r in m.doc["readings"]}))
    ]
    # The last window is still open on the edge (no reading of the next one yet).
    assert len(done) == training.height - 1 == 5
    expected = training.select(columns).to_numpy().astype(np.float32)
    for k, window in enumerate(done):
        assert window.scored and window.n_samples == 60
        start = training.get_column("window_start")[k]
        assert window.start_ms == int(start.timestamp() * 1000)
        np.testing.assert_allclose(window.vector, expected[k], rtol=1e-5, atol=1e-6)


def test_late_readings_and_sparse_windows():
    spec = WindowSpec("welder", 60, ("current__mean", "current__std"), min_samples=3)
    windows = RollingWindows(spec)
    assert windows.add("w", "welder", 1_000, {"current": 1.0}) is None
    assert windows.add("w", "press", 61_000, {"current": 1.0}) is None  # another type
    done = windows.add("w", "welder", 61_000, {"current": 2.0})
    assert done is not None and not done.scored and done.n_samples == 1
    assert windows.add("w", "welder", 2_000, {"current": 3.0}) is None
    assert windows.late == 1
