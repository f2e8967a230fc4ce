"""`mfg demo`: simulate a plant, then build bronze and silver through Dagster.

Runs go to the persistent instance under ``data/dagster`` so that ``make dev`` shows them
(materializations, checks, metadata) afterwards.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import orjson
import polars as pl

from mfg_assets import plan
from mfg_assets.defs.models import champion_key
from mfg_assets.fleet.bundles import discover_edges
from mfg_assets.gateway.config import GatewayConfig
from mfg_assets.gateway.service import Gateway
from mfg_assets.lake.catalog import connect
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import table
from mfg_assets.ml.families import FAMILIES
from mfg_assets.settings import PACKAGE_DIR, Settings, get_settings
from mfg_assets.sim import SimConfig, ground_truth, publish, write_replay
from mfg_assets.uns.contract import load_contract

DEMO_HOURS = 48.0  # two daily partitions, with faults developing on the machines
DEMO_BUDGET = 1  # one hyper-parameter trial per family keeps the demo to minutes


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


def run_demo(
    config: SimConfig,
    broker_url: str | None = None,
    with_models: bool = True,
    wait_landed: Callable[[int], None] | None = None,
) -> int:
    """``wait_landed``: gateways already run elsewhere (`make stack`): publish only, then
    call it with the number of messages published; it returns once they are in bronze."""
    settings = get_settings()
    ensure_dagster_home(settings)
    started = time.perf_counter()
    replay = settings.replay_dir / f"demo-seed{config.seed}"
    if broker_url:
        stream_through_gateway(config, broker_url, settings, replay, wait_landed)
    else:
        summary = write_replay(config, replay)
        print(f"simulated {summary.messages} UNS messages -> {replay}")

    instance = dg.DagsterInstance.get()
    runner = plan.Runner(instance, plan.resources())
    runner.run(plan.BRONZE)
    lake = Lake(settings.lake_uri, settings.storage_options)
    days = event_days(lake)
    runner.run(plan.SILVER, days)
    print(
        f"materialized bronze and {len(days)} silver partitions ({', '.join(days)}) "
        f"in {time.perf_counter() - started:.1f}s"
    )
    _print_summary()
    if with_models:
        build_models_and_edge(runner, lake)
        print(f"dashboard: {settings.data_dir / 'reports' / 'dashboard.html'} (or: mfg dashboard)")
    print(
        f"demo done in {time.perf_counter() - started:.1f}s; "
        "every run is in the Dagster UI: make dev"
    )
    return 0


def build_models_and_edge(runner: plan.Runner, lake: Lake) -> None:
    """Features -> models (gate -> champion) -> per-edge bundles -> rollouts -> stats."""
    started = time.perf_counter()
    runner.run(plan.TRAIN, run_config=plan.train_config(DEMO_BUDGET), raise_on_error=False)
    for name in FAMILIES:
        event = runner.instance.get_latest_materialization_event(champion_key(name))
        status = "champion" if event is not None else "no champion (gate refused or failed)"
        print(f"  model {name}: {status}")
    print(
        f"trained and gated {len(FAMILIES)} model families in "
        f"{time.perf_counter() - started:.1f}s (MLflow: {get_settings().mlflow_tracking_uri})"
    )
    edges = sorted(discover_edges(lake, runner.resources["bundle_store"].store()))
    runner.add_edges(edges)
    runner.run(plan.BUNDLES, edges, raise_on_error=False)
    runner.run(plan.DEPLOY, raise_on_error=False)
    with pl.Config(tbl_rows=20, tbl_cols=-1, fmt_str_lengths=40):
        print(
            connect()
            .sql(
                "SELECT edge_id, model, model_version, precision, round(threshold, 4) AS "
                "threshold FROM edge.bundles ORDER BY ALL"
            )
            .pl()
        )


def stream_through_gateway(
    config: SimConfig,
    broker_url: str,
    settings: Settings,
    replay: Path,
    wait_landed: Callable[[int], None] | None = None,
) -> None:
    """Publish the simulated plant live and let an in-process gateway land it in bronze.

    Ground truth is not UNS traffic: it goes to the replay folder for the batch loader.
    """
    replay.mkdir(parents=True, exist_ok=True)
    truth = b"".join(orjson.dumps(record) + b"\n" for record in ground_truth(config))
    (replay / "ground_truth.jsonl").write_bytes(truth)
    if wait_landed is not None:
        counts = publish(config, broker_url)
        print(f"published {counts['total']} UNS messages to {broker_url}")
        wait_landed(counts["total"])
        return
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
