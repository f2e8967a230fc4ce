"""Label-based performance drift: the precision of each edge's flags, reference vs recent.

Input drift says the plant looks different; this says the model is *wrong* more often, in
the operators' own words: of the flags someone judged, how many did they confirm. A flag
judged at the line is the cheapest label there is, and the one that matters most (a false
alarm stops a machine).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from mfg_assets.labeling.store import judged_predictions

PRECISION_COLUMNS = {
    "edge_id": pl.String,
    "flags_judged_reference": pl.Int64,
    "flags_confirmed_reference": pl.Int64,
    "precision_reference": pl.Float64,
    "flags_judged_recent": pl.Int64,
    "flags_confirmed_recent": pl.Int64,
    "precision_recent": pl.Float64,
    "precision_drop": pl.Float64,
    "drifted": pl.Boolean,
}


@dataclass(frozen=True)
class PrecisionDrift:
    """When a precision drop is drift: enough judged flags in both windows, and a drop."""

    min_judged: int = 20
    max_drop: float = 0.15


def flag_precision(judged: pl.DataFrame) -> pl.DataFrame:
    """Per edge: flags judged, flags confirmed and their ratio (``judged_predictions`` rows)."""
    flags = judged.filter(pl.col("flagged") & pl.col("truth").is_not_null())
    return (flags.group_by("edge_id")
            .agg(pl.len().cast(pl.Int64).alias("flags_judged"),
                 pl.col("truth").sum().cast(pl.Int64).alias("flags_confirmed"))
            .with_columns((pl.col("flags_confirmed") / pl.col("flags_judged"))
                          .alias("precision"))
            .sort("edge_id"))


def precision_drift(
    predictions: pl.DataFrame,
    labels: pl.DataFrame,
    reference: tuple[datetime, datetime],
    recent: tuple[datetime, datetime],
    policy: PrecisionDrift | None = None,
) -> pl.DataFrame:
    """Flag precision per edge over a reference and a recent window (of prediction time,
    ``[start, end)``), the drop and whether it counts as drift (``PRECISION_COLUMNS``).

    ``predictions``: ``silver.edge_predictions``; ``labels``: ``silver.labels``. An edge
    with too few judged flags in either window is reported but never called drifted.
    """
    policy = policy or PrecisionDrift()
    judged = judged_predictions(predictions, labels)

    def window(span: tuple[datetime, datetime], suffix: str) -> pl.DataFrame:
        rows = judged.filter((pl.col("ts") >= span[0]) & (pl.col("ts") < span[1]))
        return flag_precision(rows).rename(
            {c: f"{c}_{suffix}" for c in ("flags_judged", "flags_confirmed", "precision")})

    both = window(reference, "reference").join(
        window(recent, "recent"), on="edge_id", how="full", coalesce=True)
    enough = (pl.col("flags_judged_reference").fill_null(0) >= policy.min_judged) & (
        pl.col("flags_judged_recent").fill_null(0) >= policy.min_judged)
    drop = pl.col("precision_reference") - pl.col("precision_recent")
    return (both.with_columns(drop.alias("precision_drop"))
            .with_columns((enough & (pl.col("precision_drop") > policy.max_drop))
                          .fill_null(False).alias("drifted"))
            .select([pl.col(c).cast(t) for c, t in PRECISION_COLUMNS.items()])
            .sort("edge_id"))
