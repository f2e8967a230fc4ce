"""Inspection statistics: per day, line and edge, what the edges judged (plain polars).

The product manager's page: how many parts the edges judged, the defect rate, accuracy
against QA labels where inspectors labelled the part, latency percentiles of the edge
inference, and where each edge stands in a rollout. ``monitoring/inspection_stats``
(:mod:`mfg_assets.defs.monitoring`) only wires :func:`build_inspection_stats`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import polars as pl

from mfg_assets.fleet.rollout import ROLLOUTS_TABLE, RolloutPolicy
from mfg_assets.lake.delta import Lake, WriteResult
from mfg_assets.lake.lineage import read_commit
from mfg_assets.lake.names import (
    MONITORING_INSPECTION_STATS,
    SILVER_EDGE_PREDICTIONS,
    SILVER_INSPECTION_IMAGES,
)
from mfg_assets.lake.registry import table

STATS_TABLE = MONITORING_INSPECTION_STATS
NORMAL_VALUES = list(RolloutPolicy().normal_values)  # the rollout's idea of "not an alarm"


def edge_stages(rollouts: pl.DataFrame) -> pl.DataFrame:
    """(edge_id, model, rollout_stage) from the latest rollout each edge took part in."""
    rows = []
    for r in rollouts.sort("updated_at").iter_rows(named=True):
        for role in ("canary", "control"):
            for edge in json.loads(r[f"{role}_edges"]):
                rows.append({"edge_id": edge, "model": r["model"], "updated_at": r["updated_at"],
                             "rollout_stage": f"{r['state']} ({role})"})
    if not rows:
        return pl.DataFrame(schema={"edge_id": pl.String, "model": pl.String,
                                    "rollout_stage": pl.String})
    frame = pl.DataFrame(rows).sort("updated_at")
    return frame.group_by("edge_id", "model", maintain_order=True).last().drop("updated_at")


def inspection_stats(
    predictions: pl.DataFrame,
    labels: pl.DataFrame,
    rollouts: pl.DataFrame,
    computed_at: datetime | None = None,
) -> pl.DataFrame:
    """Per day, line and edge (and per day and line), per model: the inspection figures.

    ``predictions``: ``silver.edge_predictions``; ``labels``: source_id, label (QA labels of
    inspected images); ``rollouts``: ``edge.rollouts``.
    """
    computed_at = computed_at or datetime.now(UTC)
    value = pl.col("value").cast(pl.String).str.to_lowercase()
    label = pl.col("label").cast(pl.String).str.to_lowercase()
    scored = predictions.join(
        labels.select("source_id", "label").unique("source_id"), on="source_id", how="left"
    ).with_columns(
        (value.is_not_null() & ~value.is_in(NORMAL_VALUES)).alias("_defect"),
        pl.when(label.is_not_null()).then(value == label).alias("_right"),
    )
    figures = [
        pl.len().cast(pl.Int64).alias("predictions"),
        pl.col("_defect").sum().cast(pl.Int64).alias("defects"),
        pl.col("_defect").mean().alias("defect_rate"),
        pl.col("_right").count().cast(pl.Int64).alias("labelled"),
        pl.col("_right").mean().alias("accuracy"),
        *(pl.col("latency_ms").quantile(q, "linear").alias(f"latency_p{int(q * 100)}_ms")
          for q in (0.5, 0.95, 0.99)),
    ]
    per_edge = scored.group_by("date", "line", "edge_id", "model").agg(figures)
    stages = edge_stages(rollouts)
    per_edge = per_edge.join(stages, on=["edge_id", "model"], how="left").with_columns(
        pl.col("rollout_stage").fill_null("none"), pl.lit("edge").alias("scope"))
    per_line = scored.group_by("date", "line", "model").agg(figures).join(
        per_edge.group_by("line", "model").agg(
            pl.col("rollout_stage").filter(pl.col("rollout_stage") != "none").unique().sort()
            .str.join(", ").alias("rollout_stage")),
        on=["line", "model"], how="left",
    ).with_columns(
        pl.when(pl.col("rollout_stage").fill_null("") == "").then(pl.lit("none"))
        .otherwise(pl.col("rollout_stage")).alias("rollout_stage"),
        pl.lit(None, pl.String).alias("edge_id"), pl.lit("line").alias("scope"),
    )
    columns = list(table(STATS_TABLE).polars_schema)
    out = pl.concat([per_line, per_edge], how="diagonal_relaxed").with_columns(
        pl.lit(computed_at).cast(pl.Datetime("us", "UTC")).alias("computed_at"))
    return out.select(columns).sort("date", "scope", "line", "edge_id", "model",
                                    nulls_last=False)


def stats_markdown(stats: pl.DataFrame) -> str:
    """The latest day as a table a person reads."""
    if stats.height == 0:
        return "no edge predictions yet"
    day = stats.get_column("date").max()
    latest = stats.filter(pl.col("date") == day).sort("scope", "line", "edge_id",
                                                       descending=[True, False, False])
    lines = [f"**{day}**", "",
             "| scope | line | edge | model | predictions | defect rate | accuracy | "
             "p50 ms | p95 ms | p99 ms | rollout |", "|---" * 11 + "|"]

    def num(value: Any, fmt: str) -> str:
        return "" if value is None else format(value, fmt)

    for r in latest.iter_rows(named=True):
        lines.append(
            f"| {r['scope']} | {r['line'] or ''} | {r['edge_id'] or ''} | {r['model']} | "
            f"{r['predictions']} | {num(r['defect_rate'], '.1%')} | {num(r['accuracy'], '.1%')} | "
            f"{num(r['latency_p50_ms'], '.1f')} | {num(r['latency_p95_ms'], '.1f')} | "
            f"{num(r['latency_p99_ms'], '.1f')} | {r['rollout_stage']} |"
        )
    return "\n".join(lines)


def build_inspection_stats(
    lake: Lake,
) -> tuple[pl.DataFrame, dict[str, int | None], WriteResult]:
    """Read the inputs at pinned versions, compute, overwrite the stats table: the stats,
    the input versions read and the write."""
    names = (SILVER_EDGE_PREDICTIONS, SILVER_INSPECTION_IMAGES, ROLLOUTS_TABLE)
    versions = {name: lake.version(table(name)) for name in names}
    predictions = lake.read(table(names[0]), versions[names[0]])
    labels = lake.scan(table(names[1]), versions[names[1]]).filter(
        pl.col("label").is_not_null()).select(pl.col("image_id").alias("source_id"),
                                              "label").collect()
    rollouts = lake.read(table(ROLLOUTS_TABLE), versions[ROLLOUTS_TABLE])
    stats = inspection_stats(predictions, labels, rollouts)
    write = lake.overwrite(table(STATS_TABLE), stats,
                           **read_commit(versions))
    return stats, versions, write
