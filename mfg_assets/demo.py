"""`mfg demo`: simulate a plant, then build bronze and silver through Dagster.

Runs go to the persistent instance under ``data/dagster`` so that ``make dev`` shows them
(materializations, checks, metadata) afterwards.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import dagster as dg
import orjson
import polars as pl

from mfg_assets.defs.bronze import bronze_from_replay
from mfg_assets.defs.resources import default_resources
from mfg_assets.defs.silver import fault_labels, silver_assets
from mfg_assets.gateway.config import GatewayConfig
from mfg_assets.gateway.service import Gateway
from mfg_assets.lake.catalog import connect
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import table
from mfg_assets.settings import PACKAGE_DIR, Settings, get_settings
from mfg_assets.sim import SimConfig, ground_truth, publish, write_replay
from mfg_assets.uns.contract import load_contract

DEMO_HOURS = 48.0  # two daily partitions, with faults developing on the machines


def ensure_dagster_home(settings: Settings) -> Path:
    """Point DAGSTER_HOME at data/dagster with the project's instance config."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    project_config = PACKAGE_DIR.parent / "dagster.yaml"
    if project_config.exists() and not (home / "dagster.yaml").exists():
        shutil.copy(project_config, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def event_days(lake: Lake) -> list[str]:
    """Days that have bronze data: the silver partitions worth materializing."""
    days: set[str] = set()
    for name in (
        "sensor_readings",
        "process_runs",
        "inspection_images",
        "edge_telemetry",
        "edge_predictions",
    ):
        spec = table(f"bronze.{name}")
        if lake.exists(spec):
            for partition in lake.table(spec).partitions():
                days.add(partition["event_date"])
    return sorted(days)


def run_demo(config: SimConfig, broker_url: str | None = None) -> int:
    settings = get_settings()
    ensure_dagster_home(settings)
    started = time.perf_counter()
    replay = settings.replay_dir / f"demo-seed{config.seed}"
    if broker_url:
        stream_through_gateway(config, broker_url, settings, replay)
    else:
        summary = write_replay(config, replay)
        print(f"simulated {summary.messages} UNS messages -> {replay}")

    instance = dg.DagsterInstance.get()
    resources = default_resources()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    dg.materialize(
        [bronze_from_replay, fault_labels], instance=instance, resources=resources, run_config=quiet
    )
    lake = Lake(settings.lake_uri, settings.storage_options)
    days = event_days(lake)
    for day in days:
        dg.materialize(
            silver_assets,
            partition_key=day,
            instance=instance,
            resources=resources,
            run_config=quiet,
        )
    print(
        f"materialized bronze and {len(days)} silver partitions ({', '.join(days)}) "
        f"in {time.perf_counter() - started:.1f}s; runs are in the Dagster UI (make dev)"
    )
    _print_summary()
    return 0


def stream_through_gateway(
    config: SimConfig, broker_url: str, settings: Settings, replay: Path
) -> None:
    """Publish the simulated plant live and let an in-process gateway land it in bronze.

    Ground truth is not UNS traffic: it goes to the replay folder for the batch loader.
    """
    replay.mkdir(parents=True, exist_ok=True)
    truth = b"".join(orjson.dumps(record) + b"\n" for record in ground_truth(config))
    (replay / "ground_truth.jsonl").write_bytes(truth)
    lake = Lake(settings.lake_uri, settings.storage_options)
    gateway_config = GatewayConfig(
        broker_url=broker_url, metrics_port=None, client_id=f"mfg-demo-gateway-{config.seed}"
    )
    gateway = Gateway(
        gateway_config, load_contract(settings.contract_path), lake, enterprise=settings.enterprise
    )
    gateway.start()
    try:
        gateway.wait_online(timeout=30)
        counts = publish(config, broker_url)
        print(f"published {counts['total']} UNS messages to {broker_url}")
        gateway.wait_for_handled(counts["total"], timeout=600)
    finally:
        gateway.stop()
    print(f"gateway committed {gateway.committed_batches} micro-batches to bronze")


def _print_summary() -> None:
    con = connect()
    with pl.Config(tbl_rows=30, tbl_cols=-1, fmt_str_lengths=50):
        print(
            con.sql(
                "SELECT machine_id, sensor, count(*) AS readings, round(avg(value), 2) AS mean "
                "FROM silver.sensor_readings GROUP BY ALL ORDER BY ALL"
            ).pl()
        )
        print(
            con.sql(
                "SELECT count(*) AS units, round(avg(yield_pct), 2) AS mean_yield, "
                "round(avg(passed::INT), 3) AS pass_rate FROM silver.process_runs"
            ).pl()
        )
        print(
            con.sql(
                "SELECT label, count(*) AS images FROM silver.inspection_images GROUP BY ALL "
                "ORDER BY ALL"
            ).pl()
        )
        print(
            con.sql(
                "SELECT stage, reason_code, count(*) AS rows FROM bronze.quarantine GROUP BY ALL "
                "UNION ALL SELECT stage, reason_code, count(*) FROM silver.quarantine GROUP BY ALL"
            ).pl()
        )
    print('query it yourself: mfg sql "SELECT * FROM silver.sensor_readings LIMIT 5"')
