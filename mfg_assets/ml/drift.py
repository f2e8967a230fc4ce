"""Drift: has the data a model sees moved away from the data it was trained on?

Plain functions (no Dagster). A *reference* window (the rows a model trained on, or simply
the oldest hours of a table) is compared with a *recent* window, per feature and per
segment (machine, camera: a recalibrated sensor on one welder is diluted to nothing when
all welders are pooled):

- PSI over quantile bins of the reference (the number of bins shrinks with small windows,
  because PSI of two samples from the same distribution grows like bins / rows);
- the two-sample Kolmogorov-Smirnov statistic and p-value;
- the Wasserstein distance, divided by the reference's spread so features are comparable.

A feature drifts when its PSI passes the threshold AND the KS test agrees (p below alpha):
PSI alone is noisy on small windows, KS alone flags trivial shifts on large ones. A family
drifts when any of its input features drifts, or when a share of them does (both
configurable), when its predictions' score distribution drifts, or when its accuracy
against labels drops (classifiers at the edge) or its absolute error against labels rises
(regressors: the champion's own predictions on rows whose outcome is known). Images
are reduced to simple statistics (brightness, contrast, edge energy) so lighting changes
are caught without a model.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from scipy import stats as sps

from mfg_assets.lake.delta import Lake, WriteResult
from mfg_assets.lake.lineage import read_commit
from mfg_assets.lake.names import (
    MONITORING_DRIFT,
    SILVER_EDGE_PREDICTIONS,
    SILVER_INSPECTION_IMAGES,
    SILVER_LABELS,
)
from mfg_assets.lake.registry import table as lake_table
from mfg_assets.ml import families
from mfg_assets.ml.drift_reference import Decision, day_to_day, decide, like_for_like, persistent
from mfg_assets.ml.families import DriftInputs
from mfg_assets.ml.features import feature_columns, parameter_columns
from mfg_assets.plant_calendar import PlantCalendar, load_calendar

if TYPE_CHECKING:
    from mfg_assets.ml.registry import ModelRegistry

log = logging.getLogger(__name__)
ALL = "all"  # segment name of an unsegmented comparison
FAULT = "is_fault"  # feature rows' fault label (ground truth / maintenance records)


@dataclass(frozen=True)
class DriftThresholds:
    psi: float = 0.2  # PSI above this is a material shift (the usual rule of thumb)
    # ...and the KS test must agree: family-wise level, Bonferroni-split over the features
    # compared (hundreds of sensor statistics would otherwise drift by chance alone)
    ks_alpha: float = 0.01
    any_feature: bool = True  # one drifted input feature is enough...
    share: float = 0.5  # ...else this share of the input features must drift
    min_rows: int = 10  # fewer rows in either window (per segment): not judged
    max_bins: int = 10
    accuracy_drop: float = 0.1  # absolute drop of accuracy against labels
    error_rise: float = 0.5  # relative rise of a regressor's mean absolute error


IMAGE_STATS = ("img_brightness", "img_contrast", "img_edge_energy")


# -- metrics -----------------------------------------------------------------------------


def _clean(values: np.ndarray | Sequence[float]) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return a[np.isfinite(a)]


def psi(reference: np.ndarray, recent: np.ndarray, bins: int = 10) -> float:
    """Population stability index over quantile bins of the reference.

    Empty bins are floored at a small share so one empty bin does not make it infinite.
    """
    ref, rec = _clean(reference), _clean(recent)
    if ref.size == 0 or rec.size == 0:
        return float("nan")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    # searchsorted on the inner edges: bin 0 is everything below the first edge, etc.
    ref_share = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=edges.size + 1)
    rec_share = np.bincount(np.searchsorted(edges, rec, side="right"), minlength=edges.size + 1)
    p = np.maximum(ref_share / ref.size, 1e-4)
    q = np.maximum(rec_share / rec.size, 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))


def ks(reference: np.ndarray, recent: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value."""
    ref, rec = _clean(reference), _clean(recent)
    if ref.size == 0 or rec.size == 0:
        return float("nan"), float("nan")
    result = sps.ks_2samp(ref, rec)
    return float(result.statistic), float(result.pvalue)


def wasserstein(reference: np.ndarray, recent: np.ndarray) -> float:
    """Wasserstein-1 distance in units of the reference's spread (std, else IQR, else 1)."""
    ref, rec = _clean(reference), _clean(recent)
    if ref.size == 0 or rec.size == 0:
        return float("nan")
    scale = float(np.std(ref))
    if scale <= 1e-12:
        q75, q25 = np.quantile(ref, [0.75, 0.25])
        scale = float(q75 - q25) or 1.0
    return float(sps.wasserstein_distance(ref, rec) / scale)


def bins_for(n_reference: int, n_recent: int, max_bins: int = 10) -> int:
    """Fewer bins for small windows: PSI's noise floor is about bins * (1/n_ref + 1/n_rec)."""
    return int(np.clip(min(n_reference, n_recent) // 10, 2, max_bins))


# -- windows -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    start: datetime | None
    end: datetime | None  # exclusive
    rows: int = 0


def split_windows(
    frame: pl.DataFrame,
    ts: str,
    recent: timedelta,
    reference: tuple[datetime, datetime] | None = None,
    reference_span: timedelta | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(reference rows, recent rows) of a frame with a time column.

    ``reference``: the [start, end] a model trained on; otherwise the oldest
    ``reference_span`` of the frame (default: everything before the recent window).
    Recent: the last ``recent`` of the frame, and never rows inside the reference.
    """
    if frame.height == 0:
        return frame, frame
    first, last = frame.get_column(ts).min(), frame.get_column(ts).max()
    recent_start = last - recent
    if reference is not None:
        ref_start, ref_end = reference
        ref = frame.filter(pl.col(ts).is_between(ref_start, ref_end, closed="both"))
        recent_start = max(recent_start, ref_end)
        rec = frame.filter(pl.col(ts) > recent_start)
    else:
        ref_end = first + reference_span if reference_span is not None else recent_start
        ref_end = min(ref_end, recent_start)
        ref = frame.filter(pl.col(ts) < ref_end)
        rec = frame.filter(pl.col(ts) >= recent_start)
    return ref, rec


def window_of(frame: pl.DataFrame, ts: str) -> Window:
    if frame.height == 0:
        return Window(None, None, 0)
    return Window(frame.get_column(ts).min(), frame.get_column(ts).max(), frame.height)


# -- per-feature drift -------------------------------------------------------------------

DRIFT_COLUMNS = {
    "kind": pl.String, "feature": pl.String, "segment": pl.String,
    "n_reference": pl.Int64, "n_recent": pl.Int64,
    "psi": pl.Float64, "ks_stat": pl.Float64, "ks_pvalue": pl.Float64,
    "wasserstein": pl.Float64, "mean_reference": pl.Float64, "mean_recent": pl.Float64,
    "drifted": pl.Boolean,
}


def feature_drift(
    reference: pl.DataFrame,
    recent: pl.DataFrame,
    columns: Sequence[str],
    segment: str | None = None,
    thresholds: DriftThresholds | None = None,
    kind: str = "input",
) -> pl.DataFrame:
    """One row per (segment, feature): PSI, KS, Wasserstein, means, and the verdict."""
    th = thresholds or DriftThresholds()
    rows = []
    if segment is None:
        groups = [(ALL, reference, recent)]
    else:
        names = sorted(set(reference.get_column(segment).drop_nulls().to_list())
                       | set(recent.get_column(segment).drop_nulls().to_list()))
        groups = [(str(n), reference.filter(pl.col(segment) == n),
                   recent.filter(pl.col(segment) == n)) for n in names]
    for name, ref, rec in groups:
        for column in columns:
            if column not in ref.columns or column not in rec.columns:
                continue
            a = _clean(ref.get_column(column).cast(pl.Float64).to_numpy())
            b = _clean(rec.get_column(column).cast(pl.Float64).to_numpy())
            if a.size == 0 and b.size == 0:
                continue  # a sensor this machine type does not have
            judged = a.size >= th.min_rows and b.size >= th.min_rows
            p = psi(a, b, bins_for(a.size, b.size, th.max_bins)) if judged else float("nan")
            stat, pvalue = ks(a, b) if judged else (float("nan"), float("nan"))
            rows.append({
                "kind": kind, "feature": column, "segment": name,
                "n_reference": int(a.size), "n_recent": int(b.size),
                "psi": p, "ks_stat": stat, "ks_pvalue": pvalue,
                "wasserstein": wasserstein(a, b) if judged else float("nan"),
                "mean_reference": float(a.mean()) if a.size else None,
                "mean_recent": float(b.mean()) if b.size else None,
                "drifted": judged,  # decided below, once the number of tests is known
            })
    frame = pl.DataFrame(rows, schema=DRIFT_COLUMNS)
    alpha = th.ks_alpha / max(1, int(frame.get_column("drifted").sum()))
    return frame.with_columns(
        (pl.col("drifted") & (pl.col("psi") > th.psi) & (pl.col("ks_pvalue") < alpha))
        .fill_null(False).alias("drifted"))


# -- images ------------------------------------------------------------------------------


def image_stats(png: Sequence[bytes]) -> np.ndarray:
    """(n, 3): mean brightness, contrast (std of grey levels), edge energy (mean |gradient|)."""
    from PIL import Image  # only image families need it

    out = np.empty((len(png), 3))
    for i, data in enumerate(png):
        img = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float32)
        gy, gx = np.gradient(img)
        out[i] = (img.mean(), img.std(), np.hypot(gx, gy).mean())
    return out


def with_image_stats(frame: pl.DataFrame) -> pl.DataFrame:
    values = image_stats(frame.get_column("png").to_list()) if frame.height else np.empty((0, 3))
    return frame.with_columns(
        pl.Series(name, values[:, i], dtype=pl.Float64) for i, name in enumerate(IMAGE_STATS))


def input_columns(frame: pl.DataFrame, inputs: DriftInputs) -> list[str]:
    """The monitored columns of a family's feature frame (after image stats were added)."""
    if inputs.kind == "sensor":
        columns = feature_columns(frame)
    elif inputs.kind == "process":
        # parameters, plus the measured outcome: a new material lot moves the yield a
        # model predicts from unchanged parameters (concept drift shows in the label)
        columns = [*parameter_columns(frame), "yield_pct"]
    else:
        columns = list(IMAGE_STATS)
    return [c for c in columns if c not in inputs.ignore and c in frame.columns]


# -- predictions and labels --------------------------------------------------------------


def prediction_drift(
    reference: pl.DataFrame,
    recent: pl.DataFrame,
    normal_values: Sequence[str] = ("ok", "false", "normal"),
    thresholds: DriftThresholds | None = None,
) -> pl.DataFrame:
    """Drift of edge prediction scores and of the defect rate (``silver.edge_predictions``)."""
    def defect(frame: pl.DataFrame) -> pl.DataFrame:
        value = pl.col("value").cast(pl.String).str.to_lowercase()
        return frame.with_columns(
            (value.is_not_null() & ~value.is_in(list(normal_values))).cast(pl.Float64)
            .alias("defect_rate"))

    return feature_drift(defect(reference), defect(recent), ["score", "defect_rate"],
                         "edge_id", thresholds, kind="prediction")


def labelled_accuracy(predictions: pl.DataFrame, labels: pl.DataFrame) -> tuple[float | None, int]:
    """Accuracy of predictions against QA labels joined by source id (None: no labels)."""
    if predictions.height == 0 or labels.height == 0:
        return None, 0
    joined = predictions.join(labels.select("source_id", "label").unique("source_id"),
                              on="source_id", how="inner")
    if joined.height == 0:
        return None, 0
    right = (pl.col("value").cast(pl.String).str.to_lowercase()
             == pl.col("label").cast(pl.String).str.to_lowercase())
    return float(joined.select(right.mean()).item()), joined.height


def performance_drift(
    reference: pl.DataFrame,
    recent: pl.DataFrame,
    labels: pl.DataFrame,
    thresholds: DriftThresholds | None = None,
) -> pl.DataFrame:
    """Accuracy against labels, reference vs recent (one row; empty without labels)."""
    th = thresholds or DriftThresholds()
    acc_ref, n_ref = labelled_accuracy(reference, labels)
    acc_rec, n_rec = labelled_accuracy(recent, labels)
    if acc_ref is None or acc_rec is None:
        return pl.DataFrame(schema=DRIFT_COLUMNS)
    judged = min(n_ref, n_rec) >= th.min_rows
    return pl.DataFrame([{
        "kind": "performance", "feature": "accuracy", "segment": ALL,
        "n_reference": n_ref, "n_recent": n_rec,
        "psi": None, "ks_stat": None, "ks_pvalue": None, "wasserstein": None,
        "mean_reference": acc_ref, "mean_recent": acc_rec,
        "drifted": bool(judged and acc_ref - acc_rec > th.accuracy_drop),
    }], schema=DRIFT_COLUMNS)


def flag_precision_drift(predictions: pl.DataFrame, feedback: pl.DataFrame,
                         reference: pl.DataFrame, recent: pl.DataFrame) -> pl.DataFrame:
    """The operators' word: precision of each edge's flags (confirmed / judged, from
    ``silver.labels``) over the prediction windows, as ``performance`` rows per edge."""
    from mfg_assets.labeling.metrics import precision_drift

    def span(frame: pl.DataFrame) -> tuple[datetime, datetime]:
        return frame["ts"].min(), frame["ts"].max() + timedelta(microseconds=1)

    table = precision_drift(predictions, feedback, span(reference), span(recent))
    return table.select(
        pl.lit("performance").alias("kind"), pl.lit("flag_precision").alias("feature"),
        pl.col("edge_id").alias("segment"),
        pl.col("flags_judged_reference").fill_null(0).alias("n_reference"),
        pl.col("flags_judged_recent").fill_null(0).alias("n_recent"),
        pl.lit(None, pl.Float64).alias("psi"), pl.lit(None, pl.Float64).alias("ks_stat"),
        pl.lit(None, pl.Float64).alias("ks_pvalue"),
        pl.lit(None, pl.Float64).alias("wasserstein"),
        pl.col("precision_reference").alias("mean_reference"),
        pl.col("precision_recent").alias("mean_recent"), "drifted",
    ).cast(DRIFT_COLUMNS)


@dataclass(frozen=True)
class Scorer:
    """A champion's predictions, for label-based monitoring of a regressor.

    ``unseen`` keeps the reference rows the model did not fit on: errors on its own
    training rows are optimistic and would make every later window look like drift.
    """

    predict: Callable[[pl.DataFrame], np.ndarray]
    target: str
    unseen: Callable[[pl.DataFrame], pl.DataFrame] = lambda frame: frame


def absolute_errors(frame: pl.DataFrame, scorer: Scorer) -> np.ndarray:
    rows = frame.filter(pl.col(scorer.target).is_not_null())
    if rows.height == 0:
        return np.empty(0)
    actual = rows.get_column(scorer.target).cast(pl.Float64).to_numpy()
    return _clean(np.abs(actual - np.asarray(scorer.predict(rows), dtype=float)))


def error_drift(
    reference: pl.DataFrame,
    recent: pl.DataFrame,
    scorer: Scorer,
    thresholds: DriftThresholds | None = None,
) -> pl.DataFrame:
    """A regressor's absolute error against labels, reference (unseen rows) vs recent.

    One row of kind ``performance``; drifted when the mean absolute error rose by more than
    ``error_rise`` (relative) and the KS test on the errors agrees.
    """
    th = thresholds or DriftThresholds()
    a, b = absolute_errors(scorer.unseen(reference), scorer), absolute_errors(recent, scorer)
    judged = a.size >= th.min_rows and b.size >= th.min_rows
    stat, pvalue = ks(a, b) if judged else (float("nan"), float("nan"))
    mae_ref = float(a.mean()) if a.size else None
    mae_rec = float(b.mean()) if b.size else None
    rose = judged and mae_rec > mae_ref * (1 + th.error_rise) and pvalue < th.ks_alpha
    return pl.DataFrame([{
        "kind": "performance", "feature": f"abs_error:{scorer.target}", "segment": ALL,
        "n_reference": int(a.size), "n_recent": int(b.size),
        "psi": psi(a, b, bins_for(a.size, b.size, th.max_bins)) if judged else float("nan"),
        "ks_stat": stat, "ks_pvalue": pvalue,
        "wasserstein": wasserstein(a, b) if judged else float("nan"),
        "mean_reference": mae_ref, "mean_recent": mae_rec, "drifted": bool(rose),
    }], schema=DRIFT_COLUMNS)


# -- the report --------------------------------------------------------------------------


@dataclass
class DriftReport:
    family: str
    features: pl.DataFrame  # DRIFT_COLUMNS, all kinds
    reference: Window
    recent: Window
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)
    drifted: bool = False
    reason: str = ""
    reference_level: str = ""  # how the reference matched the recent window's calendar
    declared_segments: tuple[str, ...] = ()  # segments whose drift persisted
    per_segment: bool = False  # declared per segment (persistence), not every drifted input

    def top(self, n: int = 3, kind: str | None = None) -> pl.DataFrame:
        rows = self.features if kind is None else self.features.filter(pl.col("kind") == kind)
        return rows.filter(pl.col("psi").is_not_nan()).sort(
            ["drifted", "psi"], descending=True, nulls_last=True).head(n)

    @property
    def evidence_id(self) -> str:
        """Same reference and same drifted features -> same id (the sensor acts once on it)."""
        drifted = sorted(f"{r['kind']}:{r['segment']}:{r['feature']}"
                         for r in self.features.filter(pl.col("drifted")).iter_rows(named=True))
        text = f"{self.family}|{self.reference.start}|{self.reference.end}|{','.join(drifted)}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def label(row: dict) -> str:
    where = "" if row["segment"] == ALL else f"{row['segment']}:"
    return f"{where}{row['feature']}"


def verdict(
    family: str,
    features: pl.DataFrame,
    reference: Window,
    recent: Window,
    thresholds: DriftThresholds | None = None,
    declared: set[str] | None = None,
) -> DriftReport:
    """Decide for a family: drifted, and why (the top drifted features by PSI).

    ``declared``: the segments whose input drift persisted over consecutive evaluations
    (``drift_reference.persistent``); inputs of other segments drifted this time only and
    do not make the family drifted yet. None: every drifted input counts at once.
    """
    th = thresholds or DriftThresholds()
    report = DriftReport(family, features, reference, recent, th)
    judged = features.filter(pl.col("n_reference") >= th.min_rows,
                             pl.col("n_recent") >= th.min_rows)
    inputs = judged.filter(pl.col("kind") == "input")
    waiting: list[str] = []
    if declared is not None:
        raw = set(inputs.filter(pl.col("drifted"))["segment"].to_list())
        waiting = sorted(raw - declared)
        inputs = inputs.with_columns(pl.col("drifted") & pl.col("segment").is_in(sorted(declared)))
        report.declared_segments = tuple(sorted(declared))
        report.per_segment = True
    drifted = pl.concat([inputs.filter(pl.col("drifted")),
                         features.filter(pl.col("drifted"), pl.col("kind") != "input")],
                        how="diagonal_relaxed")
    share = float(inputs.get_column("drifted").mean() or 0.0) if inputs.height else 0.0
    outputs = drifted.filter(pl.col("kind") != "input").height  # predictions, performance
    inputs_drift = share >= th.share or (th.any_feature and share > 0)
    if not (inputs_drift or outputs) and waiting:
        report.reason = (f"not yet: {', '.join(waiting)} drifted in this evaluation; declared "
                         "once it persists over consecutive evaluations")
        return report
    if not (inputs_drift or outputs):
        report.reason = (f"no drift: max PSI {judged.get_column('psi').max() or 0:.3f} over "
                         f"{judged.height} features" if judged.height else
                         "not enough rows in the reference or recent window")
        return report
    report.drifted = True
    top = drifted.sort("psi", descending=True, nulls_last=True).head(3)
    names = ", ".join(
        f"{label(r)} (PSI {r['psi']:.2f})" if r["psi"] is not None else
        f"{label(r)} ({r['mean_reference']:.2f} -> {r['mean_recent']:.2f})"
        for r in top.iter_rows(named=True))
    why = f"{share:.0%} of inputs" if inputs_drift else "predictions/performance"
    rule = (f"PSI > {th.psi}, KS p < {th.ks_alpha} family-wise" if declared is None else
            "BH q, effect size and day-to-day spread; persisted")
    report.reason = f"{family}: {drifted.height} drifted ({why}; {rule}): {names}"
    return report


def family_drift(
    family: str,
    features: pl.DataFrame,
    recent: timedelta,
    reference: tuple[datetime, datetime] | None = None,
    reference_span: timedelta | None = None,
    predictions: pl.DataFrame | None = None,
    labels: pl.DataFrame | None = None,
    thresholds: DriftThresholds | None = None,
    scorer: Scorer | None = None,
    calendar: PlantCalendar | None = None,
    decision: Decision | None = None,
    history: Sequence[set[str]] | None = None,
    feedback: pl.DataFrame | None = None,
) -> DriftReport:
    """The drift report of one family from its feature frame (and edge predictions, and the
    champion's errors against labels where a ``scorer`` is given).

    With a plant ``calendar``, inputs are compared like for like (``drift_reference``): the
    reference keeps the recent window's day types, shifts and hour bands, a feature drifts
    on BH-controlled tests with minimum effect sizes beyond the plant's day-to-day spread,
    and a segment counts once it drifted in ``decision.persistence`` consecutive
    evaluations (``history``: drifted segments of the earlier ones, oldest first).
    """
    inputs = families.spec(family).drift
    if inputs.kind == "image" and "png" in features.columns:
        features = with_image_stats(features)
    ref, rec = split_windows(features, inputs.ts, recent, reference, reference_span)
    columns = input_columns(features, inputs)
    level, declared = "", None
    if calendar is not None and ref.height and rec.height:
        th = thresholds or DriftThresholds()
        # A labelled fault is not the normal to compare with, and a machine in an open
        # fault is the anomaly model's business, not drift (retraining on it would teach
        # the model the fault as normal).
        open_faults: set[str] = set()
        if FAULT in ref.columns:
            ref = ref.filter(~pl.col(FAULT).fill_null(False))
            if inputs.segment:
                open_faults = set(rec.filter(pl.col(FAULT).fill_null(False))
                                  [inputs.segment].cast(pl.String).to_list())
        matched = like_for_like(ref, rec, inputs.ts, calendar, th.min_rows, inputs.segment)
        days = day_to_day(ref, matched, columns, inputs.ts, calendar, inputs.segment)
        measured = decide(feature_drift(matched.reference, matched.recent, columns,
                                        inputs.segment, thresholds), decision, days)
        parts = [measured]
        level = matched.level
        now = set(measured.filter(pl.col("drifted"))["segment"].to_list()) - open_faults
        declared = persistent(list(history or []), now, (decision or Decision()).persistence)
        ref, rec = matched.reference, matched.recent
    else:
        parts = [feature_drift(ref, rec, columns, inputs.segment, thresholds)]
    if predictions is not None and predictions.height:
        mine = predictions.filter(pl.col("model").is_in([family, f"mfg-{family}"]))
        p_ref, p_rec = split_windows(mine, "ts", recent, reference, reference_span)
        parts.append(prediction_drift(p_ref, p_rec, thresholds=thresholds))
        if labels is not None:
            parts.append(performance_drift(p_ref, p_rec, labels, thresholds))
        if feedback is not None and feedback.height and p_ref.height and p_rec.height:
            parts.append(flag_precision_drift(mine, feedback, p_ref, p_rec))
    if scorer is not None:
        parts.append(error_drift(ref, rec, scorer, thresholds))
    table = pl.concat(parts, how="diagonal_relaxed")
    report = verdict(family, table, window_of(ref, inputs.ts), window_of(rec, inputs.ts),
                     thresholds, declared)
    report.reference_level = level
    return report


def histogram_png(reference: np.ndarray, recent: np.ndarray, title: str) -> bytes:
    """Overlaid histograms, reference vs recent, on shared bins."""
    from matplotlib.figure import Figure

    from mfg_assets.ml.plots import to_png

    fig = Figure(figsize=(4.2, 3.0))
    ax = fig.add_subplot(1, 1, 1)
    a, b = _clean(reference), _clean(recent)
    both = np.concatenate([a, b])
    if both.size:
        bins = np.histogram_bin_edges(both, bins=30)
        ax.hist(a, bins=bins, alpha=0.55, density=True, label=f"reference ({a.size})")
        ax.hist(b, bins=bins, alpha=0.55, density=True, label=f"recent ({b.size})")
        ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return to_png(fig)


# -- the report over the lakehouse -------------------------------------------------------

DRIFT_TABLE = MONITORING_DRIFT


@dataclass(frozen=True)
class DriftSettings:
    """What ``monitoring.drift`` compares and when a family counts as drifted."""

    families: tuple[str, ...]
    recent_hours: float = 6.0
    # "training": the rows the champion trained on (falls back to "oldest" without one);
    # "oldest": the oldest ``reference_hours`` of the table
    reference: str = "training"
    reference_hours: float = 24.0
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)
    plots: int = 3  # histograms of the top input features per family
    # Like-for-like comparison on the plant's calendar (None: the settings' calendar file
    # or the default); ``like_for_like=False`` restores the plain window comparison.
    calendar: PlantCalendar | None = None
    like_for_like: bool = True
    decision: Decision = field(default_factory=Decision)


# Opens the MLflow registry when called (inside the guards below: a lost tracking server
# must not stop monitoring). None: no registry, the oldest window is the reference.
RegistryOpener = Callable[[], "ModelRegistry"] | None


def training_window(
    lake: Lake, registry: RegistryOpener, family: str
) -> tuple[tuple[datetime, datetime] | None, str]:
    """The time range of the feature rows the champion trained on, and where it came from."""
    inputs = families.spec(family).drift
    if registry is None:
        return None, "oldest window"
    try:
        from mfg_assets.ml.registry import DATA_TAG_PREFIX, registered_name

        champion = registry().champion(registered_name(family))
        version = None if champion is None else champion.tags.get(
            f"{DATA_TAG_PREFIX}{inputs.table}")
        if version in (None, "None"):
            return None, "oldest window (no champion)"
        span = lake.scan(lake_table(inputs.table), int(version)).select(
            pl.col(inputs.ts).min().alias("a"), pl.col(inputs.ts).max().alias("b")).collect()
        start, end = span.row(0)
        if start is None:
            return None, "oldest window (empty training version)"
        return (start, end), f"training {inputs.table}@{version}"
    except Exception as exc:  # a lost tracking server must not stop monitoring
        return None, f"oldest window (champion unknown: {type(exc).__name__})"


def champion_scorer(registry: RegistryOpener, family: str) -> Scorer | None:
    """The champion's predictions for label-based error drift (regressors with a target)."""
    inputs = families.spec(family).drift
    if registry is None or inputs.target is None:
        return None
    try:
        from mfg_assets.ml.registry import registered_name

        module = families.family(family)
        opened = registry()
        champion = opened.champion(registered_name(family))
        if champion is None:
            return None
        with tempfile.TemporaryDirectory(prefix="mfg-drift-") as tmp:
            model, info = opened.load(module, champion, Path(tmp))
        return Scorer(predict=model.predict, target=inputs.target,
                      unseen=lambda frame: module.unseen_rows(frame, info))
    except Exception as exc:  # a lost tracking server must not stop monitoring
        log.warning("no champion scorer for %s: %s", family, exc)
        return None


def compute_drift(
    lake: Lake,
    settings: DriftSettings,
    registry: RegistryOpener = None,
    now: datetime | None = None,
) -> tuple[list[DriftReport], pl.DataFrame, dict[str, int | None]]:
    """Reports per family, the rows for ``monitoring.drift`` and the input versions read."""
    now = now or datetime.now(UTC)
    versions: dict[str, int | None] = {}
    frames: dict[str, pl.DataFrame] = {}

    def read(name: str) -> pl.DataFrame:
        if name not in frames:
            versions[name] = lake.version(lake_table(name))
            frames[name] = lake.read(lake_table(name), versions[name])
        return frames[name]

    predictions = read(SILVER_EDGE_PREDICTIONS)
    labels = read(SILVER_INSPECTION_IMAGES).filter(pl.col("label").is_not_null()).select(
        pl.col("image_id").alias("source_id"), "label")
    feedback = read(SILVER_LABELS)
    reports, rows = [], []
    calendar = (settings.calendar or load_calendar()) if settings.like_for_like else None
    for family in settings.families:
        inputs = families.spec(family).drift
        window, source = (None, "oldest window")
        if settings.reference == "training":
            window, source = training_window(lake, registry, family)
        report = family_drift(
            family, read(inputs.table), recent=timedelta(hours=settings.recent_hours),
            reference=window,
            reference_span=None if window else timedelta(hours=settings.reference_hours),
            predictions=predictions, labels=labels, thresholds=settings.thresholds,
            scorer=champion_scorer(registry, family), calendar=calendar,
            decision=settings.decision,
            history=drift_history(lake, family, settings.decision.persistence - 1),
            feedback=feedback,
        )
        if report.reference_level:
            source = f"{source}; {report.reference_level}"
        reports.append(report)
        rows.append(report.features.with_columns(
            pl.lit(now).cast(pl.Datetime("us", "UTC")).alias("computed_at"),
            pl.lit(family).alias("family"),
            pl.lit(report.reference.start, pl.Datetime("us", "UTC")).alias("reference_start"),
            pl.lit(report.reference.end, pl.Datetime("us", "UTC")).alias("reference_end"),
            pl.lit(report.recent.start, pl.Datetime("us", "UTC")).alias("recent_start"),
            pl.lit(report.recent.end, pl.Datetime("us", "UTC")).alias("recent_end"),
            pl.lit(source).alias("reference_source"),
            pl.lit(report.drifted).alias("family_drifted"),
            pl.lit(report.reason).alias("reason"),
            pl.lit(report.evidence_id).alias("evidence_id"),
            declared_rows(report),
        ))
    schema = lake_table(DRIFT_TABLE)
    out = pl.concat(rows, how="diagonal_relaxed") if rows else schema.empty()
    return reports, out.select(list(schema.polars_schema)), versions


def drift_markdown(reports: list[DriftReport]) -> str:
    lines = ["| family | drifted | reason | top features (PSI / KS p) |", "|---|---|---|---|"]
    for r in reports:
        top = ", ".join(f"{label(row)} ({row['psi']:.2f} / {row['ks_pvalue']:.1e})"
                        for row in r.top(3).iter_rows(named=True))
        lines.append(f"| {r.family} | {'**yes**' if r.drifted else 'no'} | {r.reason} | {top} |")
    return "\n".join(lines)


def histograms(lake: Lake, report: DriftReport, n: int) -> str:
    """Markdown with embedded PNG histograms (reference vs recent) of the top input features."""
    inputs = families.spec(report.family).drift
    if n == 0 or report.reference.start is None or report.recent.start is None:
        return ""
    frame = lake.read(lake_table(inputs.table))
    if inputs.kind == "image":
        frame = with_image_stats(frame)
    ts = pl.col(inputs.ts)
    ref = frame.filter(ts.is_between(report.reference.start, report.reference.end))
    rec = frame.filter(ts.is_between(report.recent.start, report.recent.end))
    parts = []
    for row in report.top(n, kind="input").iter_rows(named=True):
        if inputs.segment and row["segment"] != ALL:
            seg = pl.col(inputs.segment) == row["segment"]
            a, b = ref.filter(seg), rec.filter(seg)
        else:
            a, b = ref, rec
        png = histogram_png(a.get_column(row["feature"]).to_numpy(),
                            b.get_column(row["feature"]).to_numpy(),
                            f"{label(row)}: PSI {row['psi']:.2f}")
        parts.append(f"![{label(row)}](data:image/png;base64,"
                     f"{base64.b64encode(png).decode('ascii')})")
    return "\n\n".join(parts)


@dataclass(frozen=True)
class DriftRun:
    """One evaluation appended to ``monitoring.drift``."""

    reports: list[DriftReport]
    versions: dict[str, int | None]  # the inputs read
    write: WriteResult
    histograms: dict[str, str]  # family -> markdown (families with plots only)


def report_drift(lake: Lake, settings: DriftSettings, registry: RegistryOpener = None,
                 now: datetime | None = None) -> DriftRun:
    """Measure every family's drift and append the evaluation to ``monitoring.drift``."""
    reports, rows, versions = compute_drift(lake, settings, registry, now)
    write = lake.append(lake_table(DRIFT_TABLE), rows,
                        **read_commit(versions))
    plots = {r.family: histograms(lake, r, settings.plots) for r in reports}
    return DriftRun(reports, versions, write, {f: md for f, md in plots.items() if md})


def declared_rows(report: DriftReport) -> pl.Expr:
    """``declared``: the rows behind the family's verdict. Inputs count only in the segments
    whose drift persisted (and were not in an open fault) where the report decides per
    segment; without a calendar every drifted input counts. Consumers (the retrain's gate
    segments, the loop's watch) read this, not the raw per-evaluation ``drifted``, which
    also holds segments that drifted once or were excluded."""
    if not report.drifted:
        return pl.lit(False).alias("declared")
    inputs = pl.col("kind") == "input"
    counted = (pl.col("segment").is_in(list(report.declared_segments))
               if report.per_segment else pl.lit(True))
    return (pl.col("drifted") & (~inputs | counted)).alias("declared")


def drift_history(lake: Lake, family: str, n: int) -> list[set[str]]:
    """Segments with a drifted input in each of the family's last ``n`` evaluations,
    oldest first (for persistence)."""
    spec = lake_table(DRIFT_TABLE)
    if n <= 0 or not lake.exists(spec):
        return []
    rows = (lake.scan(spec).filter(pl.col("family") == family)
            .select("computed_at", "segment", "kind", "drifted").collect())
    times = sorted(set(rows["computed_at"].to_list()))[-n:]
    return [set(rows.filter(pl.col("computed_at") == t, pl.col("kind") == "input",
                            pl.col("drifted"))["segment"].to_list()) for t in times]


def latest_drift(lake: Lake) -> pl.DataFrame:
    """(family, evidence_id, reason, computed_at) of the latest evaluation of each drifted
    family."""
    spec = lake_table(DRIFT_TABLE)
    if not lake.exists(spec):
        return pl.DataFrame(schema={"family": pl.String, "evidence_id": pl.String,
                                    "reason": pl.String,
                                    "computed_at": pl.Datetime("us", "UTC"),
                                    "segments": pl.List(pl.String)})
    latest = lake.scan(spec).filter(
        pl.col("computed_at") == pl.col("computed_at").max().over("family"))
    drifted = latest.filter(pl.col("family_drifted"))
    # the segments whose inputs drifted: a drift retrain's gate judges there (ml/gate.py)
    # rows (or a table) older than the column: what drifted
    counted = (pl.coalesce("declared", "drifted")
               if "declared" in latest.collect_schema().names() else pl.col("drifted"))
    segments = (drifted.filter(pl.col("kind") == "input", counted, pl.col("segment") != ALL)
                .group_by("family").agg(pl.col("segment").unique().sort().alias("segments")))
    return (drifted.select("family", "evidence_id", "reason", "computed_at").unique()
            .join(segments, on="family", how="left")
            .with_columns(pl.col("segments").fill_null(pl.lit([], pl.List(pl.String))))
            .sort("family").collect())


# -- when a drift retrains ---------------------------------------------------------------

# The gate of a drift retrain compares challenger and champion on the hold-out rows of the
# feature table's last DRIFT_GATE_HOURS (TrainConfig.gate_recent_hours): the whole table is
# mostly the pre-drift normal, where a model that fixes the drift does not win. Not the
# report's 6 h recent window: the families score only their time-block test rows (1 h
# blocks, 3 per 20 h cycle, up to 7 h apart), so 6 h can hold no test row at all; 12 h
# always holds at least one whole test hour and is still mostly post-drift by the time a
# drift is detected and retrained.
DRIFT_GATE_HOURS = 12.0
# After a drift retrain made a new champion, the family's drift waits this long before the
# next drift retrain (the report still records it; the nightly cadence still retrains).
DRIFT_RETRAIN_COOLDOWN = timedelta(hours=6)
# Drift retrains in a row that made no champion (the gate refused, or the run failed): the
# first is retried at once (a few more hours of post-drift data often decide the gate),
# after the second the family waits this long, then twice as long after each further one,
# up to the cooldown. A drift the retrained model cannot beat the champion on is not hurting
# the champion; without the backoff, a drift verdict that does not go away (a shift pattern
# the reference does not match) retrained the family every minute in the loop.
DRIFT_REFUSAL_BACKOFF = timedelta(minutes=5)


def refusal_backoff(refusals: int) -> timedelta:
    """How long a family's drift waits after ``refusals`` fruitless drift retrains in a row."""
    if refusals < 2:
        return timedelta(0)
    return min(DRIFT_REFUSAL_BACKOFF * 2 ** (refusals - 2), DRIFT_RETRAIN_COOLDOWN)


@dataclass(frozen=True)
class PastRetrain:
    """A drift retrain run as the policy sees it (the Dagster layer reads them)."""

    run_id: str
    families: tuple[str, ...]
    finished: bool
    # failed before its first step: the run could not be launched (a code server timeout
    # on a busy host, a lost run worker). No model was tried: the evidence is still open.
    never_started: bool = False
    succeeded: bool = False  # the champion step ran, i.e. the gate passed
    ended: datetime | None = None


def waiting_families(history: Sequence[PastRetrain], drifted: pl.DataFrame,
                     cooldown: timedelta = DRIFT_RETRAIN_COOLDOWN,
                     now: datetime | None = None) -> set[str]:
    """Families not to act on now (``history``: drift retrains, newest first): a drift
    retrain of theirs is still running, or their latest evidence predates the end of the
    last one (the report has not looked at the retrained model yet), or their last drift
    retrain made a new champion less than ``cooldown`` ago. Without the first two, every
    refreshed report with one more drifted feature would queue another retrain of the same
    family. Without the cooldown, a new champion would be retrained at once: it learned the
    new normal from a few hours among days of the old one, so its training rows still differ
    from the recent ones and the report still says drifted (measured in the loop: a second
    retrain a minute after the first one's champion, and a third queued behind it). And
    after fruitless retrains in a row, for ``refusal_backoff`` of their number."""
    evaluated = {row["family"]: row["computed_at"] for row in drifted.iter_rows(named=True)}
    now = now or datetime.now(UTC)
    busy: set[str] = set()
    refusals: Counter[str] = Counter()
    last_refused: dict[str, datetime] = {}
    succeeded: set[str] = set()  # the run of refusals of these families has ended
    for run in history:  # newest first
        if not run.finished:
            busy.update(run.families)
            continue
        if run.never_started or run.ended is None:
            continue
        busy.update(f for f in run.families if f in evaluated and evaluated[f] < run.ended)
        if run.succeeded:
            if now - run.ended < cooldown:
                busy.update(run.families)
            succeeded.update(run.families)
            continue
        for family in set(run.families) - succeeded:
            refusals[family] += 1
            last_refused.setdefault(family, run.ended)
    busy.update(f for f, n in refusals.items() if now - last_refused[f] < refusal_backoff(n))
    return busy


def never_started(history: Sequence[PastRetrain]) -> dict[str, str]:
    """Family -> id of its latest drift retrain (``history`` newest first) when that one
    never started: its evidence is to be asked for again."""
    latest: dict[str, PastRetrain] = {}
    for run in history:
        for family in run.families:
            latest.setdefault(family, run)
    return {f: run.run_id for f, run in latest.items() if run.never_started}


@dataclass(frozen=True)
class Retrain:
    """One drift retrain to launch: a family's feature table, challenger and champion."""

    family: str
    evidence_id: str
    reason: str
    run_key: str
    priority: int  # the run queue dequeues higher first


def plan_retrains(
    drifted: pl.DataFrame,
    acted: dict[str, str],
    busy: set[str] | frozenset[str] = frozenset(),
    retry: dict[str, str] | None = None,
) -> tuple[list[Retrain], dict[str, str]]:
    """One retrain per drifted family with evidence not acted on yet (``acted``: family ->
    evidence id), and the updated ``acted``. Families in ``busy`` wait (their evidence is
    not marked as acted on). One per family, not per feature table: two families on one
    table (anomaly and forecast) then queue separately, edge-served families first
    (``FamilySpec.retrain_priority``), so the fast one's champion does not wait for the slow
    one's search nor share the cores with it. ``retry``: family -> the retrain run that
    never started; its evidence is asked for again under a new run key."""
    retrains, cursor, retry = [], dict(acted), retry or {}
    # Highest priority first: the run queue dequeues as runs arrive, so a family submitted
    # a second earlier would take the one training slot whatever its priority.
    rows = sorted(drifted.iter_rows(named=True),
                  key=lambda r: (-families.retrain_priority(r["family"]), r["family"]))
    for row in rows:
        family = row["family"]
        again = family in retry and acted.get(family) == row["evidence_id"]
        if (acted.get(family) == row["evidence_id"] and not again) or family in busy:
            continue
        cursor[family] = row["evidence_id"]
        retrains.append(Retrain(
            family, row["evidence_id"], row["reason"],
            run_key=f"drift-{family}:{row['evidence_id']}"
            + (f":after-{retry[family][:8]}" if again else ""),
            priority=families.retrain_priority(family),
        ))
    return retrains, cursor
