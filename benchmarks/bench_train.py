"""Training time per model family on simulated plant data; Prophet parallel vs sequential.

    python benchmarks/bench_train.py [--quick] [--hours H] [--workers N]

Simulates a plant (in memory: simulator -> contract router -> silver typers, the path a
replay file takes), builds the feature tables with the same builders the feature assets use,
then times one ``train()`` per family with its default parameters (the first candidate of
its search space). Prophet throughput is measured twice on the same series in one run:
fitted one after another in this process, and in the family's process pool; the ratio is
the figure that matters (machines are noisy, the ratio less so).

Prints one line per figure and writes them as flat JSON to data/bench/bench_train.json.
"""

from __future__ import annotations

import argparse
import importlib
import time

import polars as pl
from _report import report
from threadpoolctl import threadpool_limits

from mfg_assets.gateway.routing import Router
from mfg_assets.lake.registry import table
from mfg_assets.lake.silver import TYPERS, refine, type_fault_labels
from mfg_assets.settings import get_settings
from mfg_assets.sim import SimConfig, iter_messages
from mfg_assets.uns.contract import load_contract

FAMILIES = ("anomaly", "forecast", "yield_model", "vision")


def simulate_silver(config: SimConfig) -> dict[str, pl.DataFrame]:
    """Every silver table of one simulated run, in memory."""
    router = Router(load_contract(get_settings().contract_path), source="bench")
    for message in iter_messages(config):
        router.route(message.topic, message.payload, message.ts_ms)
    bronze = router.take("bench").tables
    silver = {
        name: refine(table(name), typer(bronze[source]), run_id="bench").valid
        if source in bronze
        else table(name).empty()
        for name, (source, typer) in TYPERS.items()
    }
    silver["silver.fault_labels"] = fault_labels(config)  # ground truth is not UNS traffic
    return silver


def fault_labels(config: SimConfig) -> pl.DataFrame:
    import orjson

    from mfg_assets.sim import ground_truth

    records = ground_truth(config)
    return type_fault_labels(
        pl.DataFrame(
            {
                "record_id": [str(i) for i in range(len(records))],
                "ingest_batch_id": ["bench"] * len(records),
                "kind": [r["kind"] for r in records],
                "record": [orjson.dumps(r).decode() for r in records],
            },
            schema=table("bronze.ground_truth").polars_schema,
        )
    )


def build_features(silver: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    from mfg_assets.ml.features import FEATURE_SETS  # the assets' own builders and inputs

    return {fs.table: fs.build(*(silver[name] for name in fs.inputs)) for fs in FEATURE_SETS}


def time_family(name: str, features: dict[str, pl.DataFrame]) -> tuple[float, int]:
    module = importlib.import_module(f"mfg_assets.ml.{name}")
    frame = features[module.FEATURE_TABLE]
    params = module.search_space(1, 0)[0]
    started = time.perf_counter()
    with threadpool_limits(limits=1):  # as the model assets train (TrainConfig.threads)
        module.train(frame, params, seed=0)
    return time.perf_counter() - started, frame.height


def prophet_tasks(frame: pl.DataFrame) -> list:
    from mfg_assets.ml import forecast

    p = {**forecast.DEFAULT_PARAMS}
    data = forecast.series(frame, p["freq"])
    tasks = []
    for (machine_id, sensor), rows in data.group_by("machine_id", "sensor", maintain_order=True):
        if rows.height >= p["min_points"]:
            key = forecast.series_key(str(machine_id), str(sensor))
            tasks.append((key, rows["ds"].to_list(), rows["y"].to_list(), p))
    return tasks


def prophet_throughput(frame: pl.DataFrame, workers: int) -> dict[str, float]:
    from mfg_assets.ml import forecast

    tasks = prophet_tasks(frame)
    forecast.fit_all(tasks[:1], 1)  # warm the import and Stan's model in this process
    out: dict[str, float] = {"prophet_series": len(tasks), "prophet_workers": workers}
    for label, n in (("sequential", 1), ("parallel", workers)):
        started = time.perf_counter()
        forecast.fit_all(tasks, n)
        out[f"prophet_{label}_series_per_s"] = len(tasks) / (time.perf_counter() - started)
    out["prophet_parallel_speedup"] = (
        out["prophet_parallel_series_per_s"] / out["prophet_sequential_series_per_s"]
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run (under a minute)")
    parser.add_argument("--hours", type=float, default=None, help="simulated hours")
    parser.add_argument("--workers", type=int, default=2, help="Prophet process pool size")
    args = parser.parse_args()
    hours = args.hours or (12.0 if args.quick else 48.0)
    config = SimConfig(
        seed=7, duration_h=hours, fault_rate_per_day=4, image_period_s=600.0 if args.quick else 60.0
    )
    figures: dict[str, float] = {"sim_hours": hours}

    started = time.perf_counter()
    silver = simulate_silver(config)
    figures["silver_build_s"] = time.perf_counter() - started
    started = time.perf_counter()
    features = build_features(silver)
    figures["features_build_s"] = time.perf_counter() - started

    for name in FAMILIES:
        if args.quick and name == "forecast":
            continue  # measured below through the pool comparison instead
        seconds, rows = time_family(name, features)
        figures[f"train_{name}_s"] = seconds
        figures[f"train_{name}_rows"] = rows
    figures |= prophet_throughput(features["features.sensor_windows"], args.workers)

    report("bench_train", figures)


if __name__ == "__main__":
    main()
