"""``monitoring/dashboard``: the operations dashboard as a static HTML report.

The page itself is plain Python (:mod:`mfg_assets.monitoring.dashboard`); ``mfg dashboard``
serves the same page live. This asset writes a snapshot people can open or mail.
"""

from pathlib import Path

import dagster as dg

from mfg_assets.defs.automation import rebuild_on_upstream_change
from mfg_assets.defs.resources import LakehouseResource
from mfg_assets.lake.names import (
    BRONZE_QUARANTINE,
    EDGE_ROLLOUTS,
    MONITORING_COST,
    MONITORING_DRIFT,
    MONITORING_INSPECTION_STATS,
)
from mfg_assets.lake.registry import table
from mfg_assets.monitoring import dashboard as board

OWNER = "team:operations"
# bronze.validation_results is written by the same loads as bronze.quarantine but is not an
# asset of its own, so quarantine stands for both in the graph.
INPUTS = (BRONZE_QUARANTINE, MONITORING_INSPECTION_STATS, MONITORING_DRIFT, EDGE_ROLLOUTS,
          MONITORING_COST)


class DashboardConfig(dg.Config):
    path: str = ""  # empty: <data dir>/reports/dashboard.html


@dg.asset(
    key=dg.AssetKey(["monitoring", "dashboard"]),
    deps=[dg.AssetKey(table(name).asset_key_path) for name in INPUTS],
    group_name="monitoring",
    kinds={"duckdb", "delta", "html"},  # reads Delta via DuckDB; writes HTML,
    owners=[OWNER],
    description="Static HTML dashboard (data/reports/dashboard.html): contract compliance per "
    "channel and site with trend, inspection statistics, drift, rollout status and the "
    "projected monthly cost, all read from the lakehouse with DuckDB.",
    automation_condition=rebuild_on_upstream_change(),
)
def dashboard_asset(
    config: DashboardConfig, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    data = board.collect(lakehouse.lake())
    path = Path(config.path) if config.path else board.report_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(board.render_html(data), encoding="utf-8")
    compliance = data["compliance"] or {}
    meta: dict = {"dagster/uri": path.resolve().as_uri(), "path": dg.MetadataValue.path(path),
                  "bytes": path.stat().st_size,
                  "sections_empty": [k for k, v in data.items() if v is None]}
    if compliance.get("overall_valid_pct") is not None:
        meta["overall_valid_pct"] = round(compliance["overall_valid_pct"], 3)
    return dg.MaterializeResult(metadata=meta)


dashboard_assets = [dashboard_asset]
