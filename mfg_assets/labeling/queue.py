"""What to show a person first: flagged predictions, then the ones the model was least sure of.

Active learning on a budget of human attention: a flag is what the line acts on, so its
verdict is worth most (a false alarm stops a machine); among the rest, a score close to its
threshold is where a verdict moves the decision boundary. Already judged predictions are left
out.
"""

from __future__ import annotations

import re

import polars as pl

from mfg_assets.labeling.store import PREDICTION_KEY, current_labels, flagged_expr

# the edge names a sensor window "<machine_id>/<window start ms>" (edge.windows)
WINDOW_ID = re.compile(r"^(?P<machine>.+)/(?P<start_ms>\d{10,16})$")


def review_queue(predictions: pl.DataFrame, labels: pl.DataFrame, limit: int = 50
                 ) -> pl.DataFrame:
    """Unjudged ``silver.edge_predictions`` rows in review order, with ``flagged`` and
    ``margin`` (|score - threshold|; null threshold: unknown margin, reviewed last)."""
    judged = current_labels(labels).select(PREDICTION_KEY)
    margin = (pl.col("score") - pl.col("threshold")).abs()
    return (
        predictions.join(judged, on=list(PREDICTION_KEY), how="anti", nulls_equal=True)
        .with_columns(flagged_expr().alias("flagged"),
                      margin.fill_nan(None).alias("margin"))
        .sort(["flagged", "margin", "ts", "source_id"],
              descending=[True, False, True, False], nulls_last=True)
        .head(limit)
    )


def window_of(source_id: str) -> tuple[str, int] | None:
    """(machine id, window start ms) of a sensor-window prediction, else None."""
    found = WINDOW_ID.match(source_id)
    return (found["machine"], int(found["start_ms"])) if found else None
