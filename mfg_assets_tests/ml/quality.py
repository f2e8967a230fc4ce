"""Model quality on a realistic simulated run (not a test: run it by hand, once).

    .venv/bin/python -m mfg_assets_tests.ml.quality [--hours 48] [--seed 42]

Simulates a plant (default periods and fault rate), builds the feature tables, trains
each family with its default parameters and prints the held-out metrics and timings.
"""

from __future__ import annotations

import argparse
import json
import time

import polars as pl

from mfg_assets.ml import anomaly, features, forecast, vision, yield_model
from mfg_assets.sim import SimConfig
from mfg_assets_tests.ml.simdata import simulate_silver


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hours", type=float, default=48.0)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    started = time.perf_counter()
    silver = simulate_silver(SimConfig(seed=args.seed, duration_h=args.hours))
    windows = features.sensor_windows(
        silver["silver.sensor_readings"], silver["silver.fault_labels"]
    )
    tables = {
        "sensor_windows": windows,
        "process_units": features.process_units(
            silver["silver.process_runs"], silver["silver.process_parameters"]
        ),
        "image_dataset": features.image_dataset(silver["silver.inspection_images"]),
    }
    sizes = {name: frame.height for name, frame in tables.items()}
    print(
        f"simulated {args.hours} h, seed {args.seed}: {sizes} "
        f"in {time.perf_counter() - started:.0f} s; fault windows "
        f"{windows.get_column('is_fault').mean():.1%}"
    )

    runs = [
        ("sensor_anomaly", anomaly, "sensor_windows", {}),
        ("failure_forecast", forecast, "sensor_windows", {}),
        ("process_yield", yield_model, "process_units", {}),
        ("vision_defect", vision, "image_dataset", {}),
        ("vision_defect/one_class", vision, "image_dataset", {"mode": "one_class"}),
    ]
    report = {}
    for name, family, table_name, params in runs:
        t = time.perf_counter()
        trained = family.train(tables[table_name], params, seed=0)
        seconds = time.perf_counter() - t
        metrics = {k: round(v, 4) for k, v in trained.holdout_metrics.items()}
        report[name] = {"holdout": metrics, "train_s": round(seconds, 1)}
        print(
            f"{name}: holdout {metrics}  (train {seconds:.1f} s, n_train "
            f"{trained.info.get('n_train')})",
            flush=True,
        )
        if family is forecast:
            per_sensor = trained.info["holdout_per_sensor"]
            for sensor, values in per_sensor.items():
                print(f"    {sensor}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items()))
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    pl.Config.set_tbl_width_chars(120)
    main()
