"""The next training set: operators' verdicts joined onto a family's feature rows.

Where someone judged a prediction, their word replaces the label the feature table carries
(the simulator's ground truth, a QA label, or none); everything else keeps its own label.
``label_source`` says which one each row got, so a training run can report how many labels
came from people.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from mfg_assets.labeling.queue import window_of
from mfg_assets.labeling.store import NORMAL_LABELS, REJECT, judged_predictions

OPERATOR, DATASET = "operator", "dataset"


def _sensor_truth(judged: pl.DataFrame) -> pl.DataFrame:
    """machine_id, window_start, truth of judged sensor-window predictions."""
    rows = []
    for source_id, truth in judged.select("source_id", "truth").iter_rows():
        window = window_of(source_id)
        if window is not None and truth is not None:
            start = datetime.fromtimestamp(window[1] / 1000, UTC)
            rows.append({"machine_id": window[0], "window_start": start, "_truth": truth})
    return pl.DataFrame(rows, schema={"machine_id": pl.String,
                                      "window_start": pl.Datetime("us", "UTC"),
                                      "_truth": pl.Boolean})


def _image_label(normal: str) -> pl.Expr:
    """The class a verdict gives an image: the label it names, the prediction's own class when
    confirmed, the normal class when a defect flag is rejected; null when it cannot say which
    defect (a rejected pass: some defect, not which)."""
    verdict = pl.col("verdict").str.to_lowercase()
    value = pl.col("value").cast(pl.String).str.strip_chars('"')
    return (pl.when(verdict == "confirm").then(value)
            .when(verdict == REJECT).then(
                pl.when(pl.col("flagged")).then(pl.lit(normal)).otherwise(pl.lit(None)))
            .when(verdict.is_in(list(NORMAL_LABELS))).then(pl.lit(normal))
            .otherwise(pl.col("verdict")))


def with_labels(
    features: pl.DataFrame,
    predictions: pl.DataFrame,
    labels: pl.DataFrame,
    model: str | None = None,
    normal_class: str = "ok",
) -> pl.DataFrame:
    """``features`` (``features.sensor_windows`` or ``features.image_dataset``) with the
    verdicts on ``predictions`` (``silver.edge_predictions``) from ``labels``
    (``silver.labels``) overriding ``is_fault`` / ``label``; adds ``label_source``."""
    rows = predictions if model is None else predictions.filter(pl.col("model") == model)
    judged = judged_predictions(rows, labels).sort("labelled_at")
    if "is_fault" in features.columns:
        truth = _sensor_truth(judged).unique(["machine_id", "window_start"], keep="last")
        out = features.join(truth, on=["machine_id", "window_start"], how="left")
        return out.with_columns(
            pl.coalesce("_truth", "is_fault").alias("is_fault"),
            pl.when(pl.col("_truth").is_not_null()).then(pl.lit(OPERATOR))
            .otherwise(pl.lit(DATASET)).alias("label_source"),
        ).drop("_truth")
    if "label" in features.columns and "image_id" in features.columns:
        given = (judged.with_columns(_image_label(normal_class).alias("_label"))
                 .filter(pl.col("_label").is_not_null())
                 .unique("source_id", keep="last")
                 .select(pl.col("source_id").alias("image_id"), "_label"))
        out = features.join(given, on="image_id", how="left")
        return out.with_columns(
            pl.coalesce("_label", "label").alias("label"),
            pl.when(pl.col("_label").is_not_null()).then(pl.lit(OPERATOR))
            .otherwise(pl.lit(DATASET)).alias("label_source"),
        ).drop("_label")
    raise ValueError("features have neither is_fault (sensor windows) nor image_id and label "
                     f"(images): {features.columns[:8]}")
