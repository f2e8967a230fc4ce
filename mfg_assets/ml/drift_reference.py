"""Like-for-like drift: compare a recent window with reference rows of the same kind of time.

A Monday early shift compared with a weekend is "drift" to any test, and an alarm that
follows the calendar trains operators to ignore it. So before any statistic is computed:

- rows inside planned stops are left out of both windows (a stopped press is not a press);
- each row gets its calendar context (day type, shift, and a local hour band) from the
  plant calendar; the reference keeps only rows whose context occurs in the recent window,
  subsampled (evenly, deterministically) so each context has the recent window's share;
- the finest context level with enough reference rows for every recent context is used:
  day type + shift + hour band, then day type + shift, then shift; only when none has
  enough rows does the comparison fall back to the whole reference window, and it says so.

Then the decision controls false alarms by construction (``decide``): Benjamini-Hochberg
over all per-feature KS tests of a family (segments x features), a minimum effect size
(PSI and the spread-normalised Wasserstein distance), a shift larger than the plant's own
day-to-day variation (``day_to_day``), and ``persistent`` declares drift for a segment only
after it drifted in N consecutive evaluations.

Why the day-to-day baseline: sensor windows of one afternoon are not independent samples
(weather, material, the shift's own rhythm move them together), so a KS test on 36 windows
of one afternoon finds "significant" differences between any two ordinary days (measured in
benchmarks/bench_drift.py: temperatures 2-3 C apart on calm days). A shift counts only
when the recent mean lies further from the like-for-like reference than ``min_day_z``
standard deviations of the same hours' daily means in the reference (day type removed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.stats import false_discovery_control, norm
from scipy.stats import t as t_dist

from mfg_assets.plant_calendar import (
    DAY_TYPE,
    LOCAL_HOUR,
    PLANNED_STOP,
    SHIFT,
    PlantCalendar,
    as_utc,
)

HOUR_BAND = "cal_hour_band"
# Context levels, finest first, and how a report names them.
LEVELS: tuple[tuple[tuple[str, ...], str], ...] = (
    ((DAY_TYPE, SHIFT, HOUR_BAND), "same day type, shift and hour band"),
    ((DAY_TYPE, SHIFT), "same day type and shift"),
    ((SHIFT,), "same shift"),
)
WHOLE = "whole reference window (no like-for-like reference with enough rows)"
CALENDAR_COLUMNS = (DAY_TYPE, SHIFT, PLANNED_STOP, LOCAL_HOUR, HOUR_BAND)


@dataclass(frozen=True)
class Matched:
    reference: pl.DataFrame  # calendar columns dropped again
    recent: pl.DataFrame
    level: str  # which context level matched, or WHOLE
    contexts: tuple[str, ...]  # the recent window's contexts at that level
    stopped_rows: int  # rows left out because they fell in planned stops


def with_context(frame: pl.DataFrame, ts: str, calendar: PlantCalendar,
                 hour_band_h: int = 2) -> pl.DataFrame:
    annotated = calendar.annotate(frame, ts)
    return annotated.with_columns(
        (pl.col(LOCAL_HOUR).cast(pl.Int16) // hour_band_h).cast(pl.Int8).alias(HOUR_BAND))


def _key(columns: tuple[str, ...]) -> pl.Expr:
    return pl.concat_str([pl.col(c).cast(pl.String).fill_null("?") for c in columns],
                         separator="/")


def _even_sample(frame: pl.DataFrame, n: int) -> pl.DataFrame:
    """``n`` rows spread evenly over ``frame`` (deterministic: same input, same rows)."""
    if n >= frame.height:
        return frame
    picks = np.unique(np.linspace(0, frame.height - 1, num=n).round().astype(np.int64))
    return frame[picks]


def like_for_like(
    reference: pl.DataFrame,
    recent: pl.DataFrame,
    ts: str,
    calendar: PlantCalendar,
    min_rows: int = 10,
    segment: str | None = None,
    hour_band_h: int = 2,
) -> Matched:
    """Reference rows of the recent window's calendar contexts, in the recent window's mix.

    ``min_rows``: reference rows needed per recent context (and per segment, where given)
    for a level to be used.
    """
    ref = with_context(reference, ts, calendar, hour_band_h)
    rec = with_context(recent, ts, calendar, hour_band_h)
    stopped = int(ref[PLANNED_STOP].sum() or 0) + int(rec[PLANNED_STOP].sum() or 0)
    ref = ref.filter(~pl.col(PLANNED_STOP))
    rec = rec.filter(~pl.col(PLANNED_STOP))
    groups = [segment] if segment and segment in rec.columns else []
    for columns, name in LEVELS:
        ref_k = ref.with_columns(_key(columns).alias("_ctx"))
        rec_k = rec.with_columns(_key(columns).alias("_ctx"))
        need = rec_k.group_by([*groups, "_ctx"]).len("n_recent")
        have = ref_k.group_by([*groups, "_ctx"]).len("n_ref")
        joined = need.join(have, on=[*groups, "_ctx"], how="left").fill_null(0)
        if joined.height == 0 or joined["n_ref"].min() < min_rows:
            continue
        matched = _stratified(ref_k, joined, groups)
        contexts = tuple(sorted(set(rec_k["_ctx"].to_list())))
        return Matched(_plain(matched), _plain(rec_k), name, contexts, stopped)
    return Matched(_plain(ref), _plain(rec), WHOLE, (), stopped)


def _stratified(ref: pl.DataFrame, counts: pl.DataFrame, groups: list[str]) -> pl.DataFrame:
    """Per segment: reference rows of each context in the recent window's proportions, as
    many as the scarcest context allows."""
    parts = []
    by_group = counts.partition_by(groups, as_dict=True) if groups else {(): counts}
    for key, rows in by_group.items():
        share = rows["n_recent"] / rows["n_recent"].sum()
        total = float((rows["n_ref"] / share).min())  # the scarcest context sets the size
        for context, n_share in zip(rows["_ctx"], share, strict=True):
            pool = ref.filter(pl.col("_ctx") == context)
            if groups:
                pool = pool.filter(pl.col(groups[0]) == key[0])
            parts.append(_even_sample(pool, max(1, round(total * n_share))))
    return pl.concat(parts) if parts else ref.head(0)


def _plain(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.drop([c for c in (*CALENDAR_COLUMNS, "_ctx") if c in frame.columns])


# -- the plant's own day-to-day variation ------------------------------------------------

LOCAL_DATE = "cal_local_date"


def day_to_day(
    reference: pl.DataFrame,
    matched: Matched,
    columns: Sequence[str],
    ts: str,
    calendar: PlantCalendar,
    segment: str | None = None,
    hour_band_h: int = 2,
) -> pl.DataFrame:
    """Per (segment, feature): how many day-to-day standard deviations the recent mean lies
    from the like-for-like reference mean (``day_z``), and the days behind the spread.

    The spread is the standard deviation of the reference's daily means over the recent
    window's shifts and hour bands, after removing each day type's own mean (a weekend is
    allowed to differ from a Monday; that is what the like-for-like reference is for).

    Too few days for that (a short history): the spread of the reference's means over
    consecutive blocks as long as the recent window instead, whatever their shift. That
    mixes shifts into the spread, so it is wider and the cut more cautious, never narrower
    than what the windows' own autocorrelation allows. NaN only without 3 such blocks.
    """
    ref = with_context(reference, ts, calendar, hour_band_h).filter(~pl.col(PLANNED_STOP))
    rec = with_context(matched.recent, ts, calendar, hour_band_h)
    bands = rec.select(SHIFT, HOUR_BAND).unique()
    ref = ref.join(bands, on=[SHIFT, HOUR_BAND], how="semi")
    ref = ref.with_columns(_local_date(ref, ts, calendar).alias(LOCAL_DATE))
    seg = [segment] if segment and segment in ref.columns else []
    present = [c for c in columns if c in ref.columns and c in matched.recent.columns]
    rows = []
    if not present:
        return pl.DataFrame(schema={"segment": pl.String, "feature": pl.String,
                                    "day_z": pl.Float64, "n_days": pl.Int64,
                                    "dof": pl.Int64})
    daily = ref.group_by([*seg, LOCAL_DATE, DAY_TYPE]).agg(pl.col(present).mean())
    centred = daily.with_columns(
        (pl.col(c) - pl.col(c).mean().over([*seg, DAY_TYPE])) for c in present)
    groups = centred.partition_by(seg, as_dict=True) if seg else {("all",): centred}
    for key, part in groups.items():
        name = str(key[0])
        n_days, n_types = part.height, part[DAY_TYPE].n_unique()
        ref_rows = matched.reference.filter(pl.col(segment) == key[0]) if seg \
            else matched.reference
        rec_rows = matched.recent.filter(pl.col(segment) == key[0]) if seg else matched.recent
        for column in present:
            values = part[column].drop_nulls().drop_nans().to_numpy()
            dof = values.size - n_types
            sd = float(np.sqrt(np.sum(values ** 2) / dof)) if dof >= 2 else float("nan")
            if dof < 2:
                sd, dof = _block_spread(reference, matched.recent, column, ts, segment,
                                        key[0] if seg else None)
            delta = abs(_mean(rec_rows, column) - _mean(ref_rows, column))
            # the like-for-like mean is itself the mean of a few days: its own uncertainty
            # widens the spread (a weekend reference is two days, not seven)
            sd *= float(np.sqrt(1.0 + 1.0 / max(1, _days_in(ref_rows, ts, calendar))))
            rows.append({"segment": name, "feature": column, "n_days": n_days, "dof": dof,
                         "day_z": delta / sd if sd > 1e-12 else (
                             float("inf") if delta > 1e-12 and dof >= 2 else float("nan"))})
    return pl.DataFrame(rows, schema={"segment": pl.String, "feature": pl.String,
                                      "day_z": pl.Float64, "n_days": pl.Int64,
                                    "dof": pl.Int64})


def _block_spread(reference: pl.DataFrame, recent: pl.DataFrame, column: str, ts: str,
                  segment: str | None, name: object) -> tuple[float, int]:
    """(std of the reference's block means, its degrees of freedom); blocks as long as the
    recent window, consecutive from the reference's start."""
    rows = reference.filter(pl.col(segment) == name) if segment and name is not None \
        else reference
    if rows.height == 0 or recent.height == 0:
        return float("nan"), 0
    span = recent[ts].max() - recent[ts].min()
    if span is None or span.total_seconds() <= 0:
        return float("nan"), 0
    start = rows[ts].min()
    block = ((pl.col(ts) - start).dt.total_seconds() // span.total_seconds()).alias("_block")
    means = (rows.with_columns(block).group_by("_block")
             .agg(pl.col(column).cast(pl.Float64).drop_nans().mean())[column]
             .drop_nulls().to_numpy())
    if means.size < 3:
        return float("nan"), 0
    return float(np.std(means, ddof=1)), int(means.size - 1)


def _mean(frame: pl.DataFrame, column: str) -> float:
    value = frame[column].cast(pl.Float64).drop_nans().mean() if frame.height else None
    return float(value) if value is not None else float("nan")


def _days_in(frame: pl.DataFrame, ts: str, calendar: PlantCalendar) -> int:
    return _local_date(frame, ts, calendar).n_unique() if frame.height else 0


def _local_date(frame: pl.DataFrame, ts: str, calendar: PlantCalendar) -> pl.Series:
    return as_utc(frame[ts]).dt.convert_time_zone(calendar.timezone).dt.date()


# -- the decision ------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    fdr: float = 0.05  # Benjamini-Hochberg false discovery rate over a family's tests
    min_psi: float = 0.2  # ...and the shift must matter: PSI above this
    min_wasserstein: float = 0.25  # ...and move the distribution by this many ref. stds
    min_day_z: float = 3.0  # ...and further than this many day-to-day stds (where known)
    persistence: int = 2  # consecutive drifted evaluations before a segment is declared


def decide(features: pl.DataFrame, decision: Decision | None = None,
           days: pl.DataFrame | None = None) -> pl.DataFrame:
    """``features`` (DRIFT_COLUMNS rows with psi, ks_pvalue, wasserstein) with ``q_value``,
    ``day_z`` and a ``drifted`` verdict: BH-adjusted p below the FDR AND both effect sizes
    large AND (where ``days`` from ``day_to_day`` could measure it) beyond the plant's own
    day-to-day variation.

    Rows that were not judged (too few rows: NaN p-value) never drift and do not count as
    tests. Rows of other kinds keep their own verdict (labels, predictions).
    """
    th = decision or Decision()
    p = features["ks_pvalue"].to_numpy().astype(float)
    tested = np.isfinite(p) & (features["kind"] == "input").to_numpy()
    q = np.full(p.shape, np.nan)
    if tested.any():
        q[tested] = false_discovery_control(np.clip(p[tested], 0.0, 1.0), method="bh")
    psi = features["psi"].fill_null(np.nan).to_numpy().astype(float)
    w = features["wasserstein"].fill_null(np.nan).to_numpy().astype(float)
    input_verdict = tested & (np.nan_to_num(q, nan=1.0) < th.fdr) & (
        np.nan_to_num(psi) > th.min_psi) & (np.nan_to_num(w) > th.min_wasserstein)
    day_z = np.full(p.shape, np.nan)
    if days is not None and days.height:
        day_z = features.select("segment", "feature").join(
            days.select("segment", "feature", "day_z"), on=["segment", "feature"],
            how="left", maintain_order="left")["day_z"].fill_null(np.nan).to_numpy()
        # The spread of a few days is itself uncertain: the cut is the Student-t quantile
        # with the spread's degrees of freedom at the tail ``min_day_z`` has for a normal
        # (3 -> 0.27 % two-sided): 2 degrees of freedom need 19 spreads, 20 about 3.4
        dof = features.select("segment", "feature").join(
            days.select("segment", "feature", "dof"), on=["segment", "feature"],
            how="left", maintain_order="left")["dof"].fill_null(0).to_numpy()
        tail = 2 * norm.sf(th.min_day_z)
        cut = np.where(dof >= 1, t_dist.isf(tail / 2, np.maximum(dof, 1)), np.inf)
        # unknown spread (fewer than 3 days): the other criteria decide alone
        input_verdict &= np.where(np.isnan(day_z), True, day_z > np.maximum(cut, th.min_day_z))
    is_input = (features["kind"] == "input").to_numpy()
    verdict = np.where(is_input, input_verdict, features["drifted"].fill_null(False).to_numpy())
    return features.with_columns(pl.Series("q_value", q, dtype=pl.Float64),
                                 pl.Series("day_z", day_z, dtype=pl.Float64),
                                 pl.Series("drifted", verdict, dtype=pl.Boolean))


def persistent(history: Sequence[set[str]], current: set[str], persistence: int) -> set[str]:
    """Segments declared drifted now: drifted in this evaluation and the ``persistence - 1``
    before it (``history``: drifted segments of earlier evaluations, oldest first)."""
    if persistence <= 1:
        return set(current)
    needed = list(history)[-(persistence - 1):]
    if len(needed) < persistence - 1:
        return set()
    declared = set(current)
    for earlier in needed:
        declared &= earlier
    return declared
