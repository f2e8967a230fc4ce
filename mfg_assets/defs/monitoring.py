"""Monitoring: views of the running plant for the people who run it.

``monitoring/inspection_stats`` is the product manager's page: per day, per line and per
edge, how many parts the edges judged, the defect rate, accuracy against QA labels where
inspectors labelled the part, latency percentiles of the edge inference, and where each
edge stands in a rollout. Rebuilt from silver on every materialization by the plain
:func:`mfg_assets.monitoring.inspection.build_inspection_stats`; the asset only wires it.
"""

import dagster as dg
import polars as pl

from mfg_assets.defs.automation import on_cadence
from mfg_assets.defs.edge import ROLLOUTS_KEY
from mfg_assets.defs.metadata import table_metadata
from mfg_assets.defs.resources import LakehouseResource
from mfg_assets.lake.names import SILVER_EDGE_PREDICTIONS, SILVER_INSPECTION_IMAGES
from mfg_assets.lake.registry import table
from mfg_assets.monitoring.inspection import STATS_TABLE, build_inspection_stats, stats_markdown

OWNER = "team:operations"


@dg.asset(
    key=dg.AssetKey(table(STATS_TABLE).asset_key_path),
    deps=[
        dg.AssetKey(table(SILVER_EDGE_PREDICTIONS).asset_key_path),
        dg.AssetKey(table(SILVER_INSPECTION_IMAGES).asset_key_path),
        ROLLOUTS_KEY,
    ],
    group_name="monitoring",
    kinds={"polars", "delta"},
    owners=[OWNER],
    description="Inspection statistics per day, line and edge: defect rate, accuracy against "
    "QA labels, edge inference latency p50/p95/p99 and rollout stage. The product "
    "manager's view of the edge fleet (monitoring.inspection_stats).",
    metadata={"dagster/table_name": STATS_TABLE},
    automation_condition=on_cadence("0 * * * *", "hourly"),
)
def inspection_stats_asset(lakehouse: LakehouseResource) -> dg.MaterializeResult:
    lake = lakehouse.lake()
    stats, versions, write = build_inspection_stats(lake)
    meta = table_metadata(lake, table(STATS_TABLE), write)
    meta["inputs_read"] = dg.MetadataValue.json(versions)
    meta["inspection_stats"] = dg.MetadataValue.md(stats_markdown(stats))
    edges = stats.filter(pl.col("scope") == "edge")
    meta["edges"] = edges.get_column("edge_id").n_unique()
    meta["predictions"] = int(edges.get_column("predictions").sum() or 0)
    return dg.MaterializeResult(metadata=meta)


monitoring_assets = [inspection_stats_asset]
