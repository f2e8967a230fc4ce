"""The next training set: operators' verdicts joined onto a family's feature rows.

Where someone judged a prediction, their word replaces the label the feature table carries
(the simulator's ground truth, a QA label, or none); everything else keeps its own label.
``label_source`` says which one each row got, so a training run can report how many labels
came from people. :func:`training_frame` is what the challenger asset calls: the family's
pinned feature rows with the current verdicts applied, and a summary (rows labelled by
operators, labels they changed, the label tables' versions for the model's lineage).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from mfg_assets.labeling.queue import window_of
from mfg_assets.labeling.store import NORMAL_LABELS, REJECT, judged_predictions
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.names import (
    FEATURES_IMAGE_DATASET,
    FEATURES_SENSOR_WINDOWS,
    SILVER_EDGE_PREDICTIONS,
    SILVER_LABELS,
)
from mfg_assets.lake.registry import table
from mfg_assets.ml.families import FamilySpec
from mfg_assets.ml.registry import registered_name

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
        # left order kept: families split by position and time, and callers compare row by row
        out = features.join(truth, on=["machine_id", "window_start"], how="left",
                            maintain_order="left")
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
        out = features.join(given, on="image_id", how="left", maintain_order="left")
        return out.with_columns(
            pl.coalesce("_label", "label").alias("label"),
            pl.when(pl.col("_label").is_not_null()).then(pl.lit(OPERATOR))
            .otherwise(pl.lit(DATASET)).alias("label_source"),
        ).drop("_label")
    raise ValueError("features have neither is_fault (sensor windows) nor image_id and label "
                     f"(images): {features.columns[:8]}")


# feature tables whose rows a verdict can relabel: a window's is_fault, an image's label
RELABELLED = frozenset({FEATURES_SENSOR_WINDOWS, FEATURES_IMAGE_DATASET})


@dataclass(frozen=True)
class TrainingLabels:
    """Where a training set's labels came from, for the run's metadata and lineage."""

    applies: bool  # the family's feature table takes operators' verdicts at all
    operator_rows: int  # feature rows whose label is an operator's verdict
    changed: int  # of those, rows whose label differs from the feature table's own
    versions: dict[str, int | None]  # Delta versions of silver.labels / edge_predictions read

    def metadata(self) -> dict[str, int]:
        """For the training run's catalog entry; nothing for families verdicts cannot label."""
        if not self.applies:
            return {}
        return {"operator_labels": self.operator_rows,
                "labels_changed_by_operators": self.changed}


def _pinned(lake: Lake, name: str) -> tuple[pl.LazyFrame, int | None]:
    """The table at its current version (recorded, so a new verdict is a new input); an
    empty frame of its schema when it does not exist yet."""
    spec = table(name)
    version = lake.version(spec)
    return (spec.empty().lazy() if version is None else lake.scan(spec, version)), version


def _normal_class(features: pl.DataFrame) -> str:
    """The good-part class the image table uses ("ok" unless it names another normal one)."""
    present = set(features.get_column("label").drop_nulls().unique().to_list())
    return next((name for name in ("ok", "good", "pass", "normal") if name in present), "ok")


def training_frame(lake: Lake, family: FamilySpec, features: pl.DataFrame
                   ) -> tuple[pl.DataFrame, TrainingLabels]:
    """``features`` of ``family`` with operators' verdicts as labels where there are any.

    Families on sensor windows or inspection images get :func:`with_labels` over the current
    ``silver.labels`` and ``silver.edge_predictions``; other families, and a lakehouse with
    no verdicts, train on ``features`` as they are. ``label_source`` is counted into the
    summary and dropped: the model code picks its inputs by name, and a string column has
    no business in a training frame.
    """
    if family.feature_table not in RELABELLED:
        return features, TrainingLabels(False, 0, 0, {})
    labels, labels_version = _pinned(lake, SILVER_LABELS)
    scan, predictions_version = _pinned(lake, SILVER_EDGE_PREDICTIONS)
    versions = {SILVER_LABELS: labels_version, SILVER_EDGE_PREDICTIONS: predictions_version}
    verdicts = labels.collect()
    if verdicts.height == 0:
        return features, TrainingLabels(True, 0, 0, versions)
    # only the judged predictions: the table holds every prediction of every edge
    judged_ids = verdicts.get_column("source_id").unique().to_list()
    judged = scan.filter(pl.col("source_id").is_in(judged_ids))
    if family.feature_table == FEATURES_IMAGE_DATASET:
        # an image's verdict names a class of this family's classifier (confirm = its class)
        judged = judged.filter(pl.col("model").is_in([family.name, registered_name(family.name)]))
        out = with_labels(features, judged.collect(), verdicts,
                          normal_class=_normal_class(features))
        column = "label"
    else:  # a verdict on a window says whether it was a fault, whichever model flagged it
        out = with_labels(features, judged.collect(), verdicts)
        column = "is_fault"
    by_operator = out.get_column("label_source") == OPERATOR
    changed = by_operator & out.get_column(column).ne_missing(features.get_column(column))
    summary = TrainingLabels(True, int(by_operator.sum()), int(changed.sum()), versions)
    return out.drop("label_source"), summary
