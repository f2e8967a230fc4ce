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

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import polars as pl
from scipy import stats as sps

from mfg_assets.ml.features import feature_columns, parameter_columns

ALL = "all"  # segment name of an unsegmented comparison


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


@dataclass(frozen=True)
class FamilyInputs:
    """What a model family reads: its feature table, time column, segment, columns."""

    table: str
    ts: str
    segment: str | None
    kind: str  # "sensor", "process" or "image": how the input columns are found
    target: str | None = None  # the label a regressor predicts (error drift needs it)
    # exogenous covariates that drift with the time of day, not with the process
    ignore: tuple[str, ...] = ()


FAMILY_INPUTS: dict[str, FamilyInputs] = {
    "sensor_anomaly": FamilyInputs("features.sensor_windows", "window_start", "machine_id",
                                   "sensor"),
    "failure_forecast": FamilyInputs("features.sensor_windows", "window_start", "machine_id",
                                     "sensor"),
    "process_yield": FamilyInputs("features.process_units", "ts", None, "process",
                                  target="yield_pct", ignore=("param__ambient_temp",)),
    "vision_defect": FamilyInputs("features.image_dataset", "ts", "camera_id", "image"),
}

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


def input_columns(frame: pl.DataFrame, inputs: FamilyInputs) -> list[str]:
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
) -> DriftReport:
    """Decide for a family: drifted, and why (the top drifted features by PSI)."""
    th = thresholds or DriftThresholds()
    report = DriftReport(family, features, reference, recent, th)
    judged = features.filter(pl.col("n_reference") >= th.min_rows,
                             pl.col("n_recent") >= th.min_rows)
    inputs = judged.filter(pl.col("kind") == "input")
    drifted = features.filter(pl.col("drifted"))
    share = float(inputs.get_column("drifted").mean() or 0.0) if inputs.height else 0.0
    outputs = drifted.filter(pl.col("kind") != "input").height  # predictions, performance
    inputs_drift = share >= th.share or (th.any_feature and share > 0)
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
    report.reason = (f"{family}: {drifted.height} drifted ({why}; PSI > {th.psi}, "
                     f"KS p < {th.ks_alpha} family-wise): {names}")
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
) -> DriftReport:
    """The drift report of one family from its feature frame (and edge predictions, and the
    champion's errors against labels where a ``scorer`` is given)."""
    inputs = FAMILY_INPUTS[family]
    if inputs.kind == "image" and "png" in features.columns:
        features = with_image_stats(features)
    ref, rec = split_windows(features, inputs.ts, recent, reference, reference_span)
    parts = [feature_drift(ref, rec, input_columns(features, inputs), inputs.segment, thresholds)]
    if predictions is not None and predictions.height:
        mine = predictions.filter(pl.col("model").is_in([family, f"mfg-{family}"]))
        p_ref, p_rec = split_windows(mine, "ts", recent, reference, reference_span)
        parts.append(prediction_drift(p_ref, p_rec, thresholds=thresholds))
        if labels is not None:
            parts.append(performance_drift(p_ref, p_rec, labels, thresholds))
    if scorer is not None:
        parts.append(error_drift(ref, rec, scorer, thresholds))
    table = pl.concat(parts)
    return verdict(family, table, window_of(ref, inputs.ts), window_of(rec, inputs.ts),
                   thresholds)


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
