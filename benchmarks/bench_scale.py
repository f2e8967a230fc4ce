"""Analyst queries on a large sensor table: before and after maintenance, against a full scan.

    python benchmarks/bench_scale.py [--rows 100_000_000] [--quick]

Builds `silver.sensor_readings` (daily partitions) from many micro-batch appends, as the
gateway + silver leave it, then times two analyst queries through the DuckDB catalog:
(a) one machine, one day; (b) fleet-wide daily averages — before maintenance, after
compaction + Z-order + VACUUM, and a full scan (every row of the needed columns read,
then filtered: no partition pruning, no statistics) as the baseline. Ratios are within
this one run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _report import report  # noqa: E402  (benchmarks/ is the script's folder)

from mfg_assets.lake.catalog import connect  # noqa: E402
from mfg_assets.lake.delta import Lake  # noqa: E402
from mfg_assets.lake.maintenance import file_stats, maintain  # noqa: E402
from mfg_assets.lake.registry import table  # noqa: E402

SENSORS = table("silver.sensor_readings")
MACHINES = [f"m-{k:03d}" for k in range(40)]
SENSOR_NAMES = ["current", "voltage", "temperature", "vibration_rms", "power_kw"]
START = date(2026, 1, 1)


def day_frame(day: date, rows: int, batch: int, rng: np.random.Generator) -> pl.DataFrame:
    start_us = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1e6)
    micros = start_us + np.sort(rng.integers(0, 86_400, rows)) * 1_000_000
    return pl.DataFrame({
        "ts": pl.Series(micros, dtype=pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone(
            "UTC"
        ),
        "date": pl.repeat(day, rows, eager=True),
        "enterprise": pl.repeat("acme", rows, eager=True),
        "site": pl.repeat("detroit", rows, eager=True),
        "area": pl.repeat("body", rows, eager=True),
        "line": pl.repeat("line1", rows, eager=True),
        "cell": pl.repeat("cell01", rows, eager=True),
        "ingest_batch_id": pl.repeat(f"b{batch}", rows, eager=True),
        "machine_id": pl.Series(MACHINES)[rng.integers(0, len(MACHINES), rows)],
        "machine_type": pl.repeat("welder", rows, eager=True),
        "sensor": pl.Series(SENSOR_NAMES)[rng.integers(0, len(SENSOR_NAMES), rows)],
        "value": rng.normal(50.0, 10.0, rows),
        "unit": pl.repeat("u", rows, eager=True),
    })


def build(lake: Lake, rows: int, days: int, batches_per_day: int) -> float:
    rng = np.random.default_rng(7)
    per_batch = max(1, rows // (days * batches_per_day))
    started = time.perf_counter()
    for d in range(days):
        day = START + timedelta(days=d)
        for b in range(batches_per_day):
            lake.append(SENSORS, day_frame(day, per_batch, d * batches_per_day + b, rng))
    return time.perf_counter() - started


def timed(query: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        query()
        best = min(best, time.perf_counter() - started)
    return best


ONE_MACHINE_ONE_DAY = (
    "SELECT sensor, count(*), avg(value) FROM silver.sensor_readings "
    "WHERE machine_id = 'm-007' AND date = DATE '{day}' GROUP BY sensor"
)
FLEET_DAILY = (
    "SELECT date, sensor, avg(value), max(value) FROM silver.sensor_readings GROUP BY ALL"
)


def run_queries(lake: Lake, day: date) -> dict[str, float]:
    con = connect(lake)
    return {
        "one_machine_one_day_s": timed(lambda: con.execute(
            ONE_MACHINE_ONE_DAY.format(day=day)).fetchall()),
        "fleet_daily_s": timed(lambda: con.execute(FLEET_DAILY).fetchall()),
    }


def full_scan(lake: Lake, day: date) -> float:
    """The baseline: every row of the columns the query needs read, then filtered (what a
    plain folder of Parquet files costs: no partition pruning, no file statistics).

    Streamed batch by batch, so 100 M rows do not have to fit in memory at once.
    """
    def query() -> None:
        dataset = lake.table(SENSORS).to_pyarrow_dataset()
        parts = []
        for batch in dataset.to_batches(columns=["machine_id", "date", "sensor", "value"]):
            parts.append(pl.from_arrow(batch).filter(
                (pl.col("machine_id") == "m-007") & (pl.col("date") == day)))
        pl.concat(parts).group_by("sensor").agg(pl.len(), pl.col("value").mean())
    return timed(query, repeat=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--batches-per-day", type=int, default=24)
    parser.add_argument("--quick", action="store_true", help="2 M rows, under a minute")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.days, args.batches_per_day = 2_000_000, 10, 12
    day = START + timedelta(days=args.days // 2)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        lake = Lake(str(Path(tmp) / "lake"), {})
        build_s = build(lake, args.rows, args.days, args.batches_per_day)
        files_before, bytes_before = file_stats(lake, SENSORS)
        before = run_queries(lake, day)
        scan = full_scan(lake, day)
        started = time.perf_counter()
        maintain(lake, SENSORS, retention_hours=0)
        maintenance_s = time.perf_counter() - started
        files_after, bytes_after = file_stats(lake, SENSORS)
        after = run_queries(lake, day)
    figures = {
        "rows": float(args.rows),
        "build_s": build_s,
        "files_before": float(files_before),
        "files_after": float(files_after),
        "maintenance_s": maintenance_s,
        "full_scan_one_machine_one_day_s": scan,
        "before_one_machine_one_day_s": before["one_machine_one_day_s"],
        "after_one_machine_one_day_s": after["one_machine_one_day_s"],
        "before_fleet_daily_s": before["fleet_daily_s"],
        "after_fleet_daily_s": after["fleet_daily_s"],
        "speedup_one_machine_one_day_vs_full_scan": scan / after["one_machine_one_day_s"],
        "speedup_one_machine_one_day_maintenance": (
            before["one_machine_one_day_s"] / after["one_machine_one_day_s"]),
        "speedup_fleet_daily_maintenance": before["fleet_daily_s"] / after["fleet_daily_s"],
        "bytes_before_mb": bytes_before / 2**20,
        "bytes_after_mb": bytes_after / 2**20,
    }
    report("bench_scale", figures)


if __name__ == "__main__":
    main()
