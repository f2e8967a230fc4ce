"""The promotion gate: does a challenger replace the champion? (plain Python, no Dagster)

All of the policy in one place, unit-tested without Dagster:

- :func:`promotion_decision`: floors, then the primary metric against the champion's on the
  SAME hold-out rows by a relative ``margin``;
- :func:`quiet_window_decision`: a drift retrain whose recent window cannot rank the two on
  the primary metric is judged on the family's quiet metric there, with the primary metric
  and floors on the whole hold-out;
- :func:`gate_evidence`: which rows the two are compared on (the whole hold-out, or the
  last hours of the table after a drift) and their metrics there;
- :func:`challenge`: train a challenger (MLflow search), gather the evidence, decide, and
  record the verdict on the registered version (the champion step only promotes "passed").
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import polars as pl
from threadpoolctl import threadpool_limits

from mfg_assets.ml import baselines
from mfg_assets.ml.base import POSITIVES
from mfg_assets.ml.registry import (
    CHALLENGER,
    CHAMPION,
    GATE_REASON_TAG,
    GATE_TAG,
    registered_name,
)
from mfg_assets.settings import get_settings

if TYPE_CHECKING:
    from mfg_assets.ml.base import ModelFamily
    from mfg_assets.ml.registry import FamilyModule, ModelRegistry, SearchResult

# A hold-out with a few dozen faults moves F1 by several points between two models that
# are equally good (measured in the loop: 0.52 vs 0.56 for a retrain that cut false alarms
# on the replaced sensor from 97 % to 27 %): a 1 % non-inferiority bound refuses on noise.
DRIFT_TOLERANCE = 0.1


@dataclass(frozen=True)
class Decision:
    passed: bool
    reason: str
    # Not enough evidence to decide (a drifted segment with too few recent rows/positives):
    # neither a promotion nor a refusal; the champion stays and nothing counts as failed.
    waiting: bool = False

    @property
    def verdict(self) -> str:
        return "waiting" if self.waiting else "passed" if self.passed else "refused"


# -- per-plant gate settings ------------------------------------------------------------


def gate_family(family: ModelFamily, overrides: dict[str, Any] | None = None) -> ModelFamily:
    """The family as this plant judges it: the registry's floors and baseline margin, with
    the plant's overrides (``MFG_MODEL_GATES``: a YAML file ``{family: {floors: {metric:
    value or null}, baseline_margin: x, min_positives: n}}``; null removes a floor)."""
    entry = (load_gate_overrides() if overrides is None else overrides).get(family.name) or {}
    unknown = set(entry) - {"floors", "baseline_margin", "min_positives"}
    if unknown:
        raise ValueError(f"gate overrides for {family.name}: unknown keys {sorted(unknown)} "
                         "(known: floors, baseline_margin, min_positives)")
    floors = {**family.floors, **(entry.get("floors") or {})}
    return replace(family, floors={k: float(v) for k, v in floors.items() if v is not None},
                   baseline_margin=float(entry.get("baseline_margin", family.baseline_margin)),
                   min_positives=int(entry.get("min_positives", family.min_positives)))


def load_gate_overrides() -> dict[str, Any]:
    """The plant's gate overrides file (settings ``model_gates_path``), {} when unset."""
    import yaml

    path = get_settings().model_gates_path
    if path is None:
        return {}
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping of family -> gate settings")
    return doc


def baseline_failures(family: ModelFamily,
                      metrics: dict[str, float]) -> tuple[list[str], list[str]]:
    """(failures, notes) of the model against the baselines measured with it on the same
    rows: on each of ``family.baseline_metrics`` it must beat the best baseline by
    ``family.baseline_margin`` (absolute); only ``family.gate_baselines`` race it when the
    family names them. A metric nothing could measure there (one class only) is a note; a
    model with no baseline measured fails (it was not judged)."""
    failures, notes = [], []
    for metric in family.baseline_metrics:
        lower = family.metric_lower_is_better(metric)
        value = metrics.get(metric, math.nan)
        found = {k: v for k, v in baselines.of(metrics, metric).items() if math.isfinite(v)
                 and (not family.gate_baselines or k in family.gate_baselines)}
        if not found:
            if math.isfinite(value):
                failures.append(f"no baseline measured for {metric}")
            else:
                notes.append(f"{metric} not measurable on these rows (one class only?)")
            continue
        name, best = (min if lower else max)(found.items(), key=lambda kv: kv[1])
        beats = (value < best - family.baseline_margin if lower
                 else value > best + family.baseline_margin)
        text = f"{metric} {value:.4g} vs {name} baseline {best:.4g}"
        if not (math.isfinite(value) and beats):
            failures.append(f"{text} (must beat it by {family.baseline_margin:g})")
        else:
            notes.append(text)
    return failures, notes


# -- decisions on numbers --------------------------------------------------------------


def promotion_decision(
    family: ModelFamily,
    challenger_metrics: dict[str, float],
    champion_metrics: dict[str, float] | None,
    margin: float,
    floor_metrics: dict[str, float] | None = None,
    first_model: bool | None = None,
) -> Decision:
    """Should the challenger become champion?

    - The family's absolute floors always apply (to the first model and to every later
      one: beating a poor champion is not enough to ship a model below the floor); a floor
      on a lower-is-better metric is a ceiling (``ModelFamily.floor_failures``). They are
      checked on ``floor_metrics`` when given (the challenger on a larger hold-out than the
      comparison's: a recent window with a handful of positives cannot say whether a model
      meets an absolute floor), else on ``challenger_metrics``.
    - The FIRST model (no champion; ``first_model`` defaults to that) must beat the simple
      baselines measured on the same rows. A later model is judged against the champion,
      which once beat them: a drift retrain must win where the drift is, and a z-score
      refitted on the drifted rows must not keep the fix off the line while the champion
      that is worse there stays (the loop's retrain: F1 0.577 vs z-score 0.595).
    - With a champion, the challenger's primary metric must improve on the champion's, on
      the same hold-out set, by at least ``margin`` RELATIVE to the champion's value
      (0.01 = 1 % better; for lower-is-better metrics "better" means smaller). A tie never
      promotes. A champion value of 0 makes the margin absolute.
    """
    primary = family.primary_metric
    value = challenger_metrics.get(primary)
    if value is None or not math.isfinite(value):
        return Decision(False, f"challenger has no finite {primary} (got {value})")
    floored = challenger_metrics if floor_metrics is None else floor_metrics
    failures = family.floor_failures(floored)
    if failures:
        missed = "; ".join(
            f"{metric}={got:.4g} misses its floor "
            f"({'<=' if family.metric_lower_is_better(metric) else '>='} {floor:g})"
            for metric, (got, floor) in sorted(failures.items())
        )
        return Decision(False, missed)
    first = champion_metrics is None if first_model is None else first_model
    beaten, compared = baseline_failures(family, floored) if first else ([], [])
    if beaten:
        return Decision(False, "does not beat its baselines on the same rows: "
                        + "; ".join(beaten))
    floors = ", ".join(f"{m}={floored[m]:.4g}" for m in sorted(family.floors))
    floor_note = f"floors met ({floors})" if floors else "no floors declared"
    if compared:
        floor_note += f"; beats baselines ({'; '.join(compared)})"
    if champion_metrics is None:
        return Decision(True, f"first model: {floor_note}")
    base = champion_metrics.get(primary)
    if base is None or not math.isfinite(base):
        return Decision(True, f"champion has no finite {primary}; {floor_note}")
    improvement = _relative_gain(not family.higher_is_better, value, base)
    summary = (
        f"{primary} {value:.4g} vs champion {base:.4g} on the same hold-out: "
        f"{improvement:+.2%} (margin {margin:.2%})"
    )
    if improvement > 0 and improvement >= margin:
        return Decision(True, f"{summary}; {floor_note}")
    return Decision(False, summary)


def _relative_gain(lower_is_better: bool, value: float, base: float) -> float:
    gain = (base - value) if lower_is_better else (value - base)
    return gain / abs(base) if base != 0 else gain


def quiet_window_decision(
    family: ModelFamily,
    challenger_whole: dict[str, float],
    champion_whole: dict[str, float],
    challenger_recent: dict[str, float],
    champion_recent: dict[str, float],
    margin: float,
    tolerance: float,
) -> Decision:
    """A drift retrain whose recent hold-out cannot rank the two models on the primary
    metric (no fault among its test rows, or fewer than ``family.min_positives``):
    ``family.quiet_metric`` (how often each alarms on that normal operation, the harm a
    drift does) can. The challenger must then:

    - meet the family's floors on the whole hold-out;
    - still find what the champion finds: its primary metric on the whole hold-out is not
      worse than the champion's by more than ``tolerance`` (relative), so a model that just
      stopped alarming cannot win;
    - improve the quiet metric on the recent window by at least ``margin`` (relative;
      absolute when the champion's is 0).
    """
    quiet, primary = family.quiet_metric, family.primary_metric
    if quiet is None:
        raise ValueError(f"{family.name} declares no quiet_metric")
    floors = promotion_decision(family, challenger_whole, None, margin, first_model=False)
    if not floors.passed:
        return Decision(False, f"on the whole hold-out: {floors.reason}")
    value, base = challenger_whole.get(primary, math.nan), champion_whole.get(primary, math.nan)
    if math.isfinite(base):
        kept = _relative_gain(not family.higher_is_better, value, base)
        if kept < -tolerance:
            return Decision(False, f"{primary} {value:.4g} vs champion {base:.4g} on the whole "
                            f"hold-out: {kept:+.2%} (more than {tolerance:.2%} worse)")
    now, before = challenger_recent.get(quiet, math.nan), champion_recent.get(quiet, math.nan)
    if not (math.isfinite(now) and math.isfinite(before)):
        return Decision(False, f"{quiet} not measurable on the recent window "
                        f"(challenger {now}, champion {before})")
    improvement = _relative_gain(True, now, before)
    summary = (f"{quiet} {now:.4g} vs champion {before:.4g} on the recent window: "
               f"{improvement:+.2%} (margin {margin:.2%}); {primary} {value:.4g} vs "
               f"{base:.4g} on the whole hold-out")
    if now < before and improvement >= margin:
        return Decision(True, f"{summary}; {floors.reason.removeprefix('first model: ')}")
    return Decision(False, summary)


# A drifted segment's recent rows below these counts cannot decide a gate: one unit more
# or less moves its metric by more than any margin (GateSettings overrides them).
MIN_SEGMENT_ROWS = 30
MIN_SEGMENT_POSITIVES = 5


@dataclass(frozen=True)
class SegmentEvidence:
    """A drift retrain judged on the segments that drifted (machine, camera)."""

    segments: tuple[str, ...]
    rows: int  # rows the two were scored on in the drifted segments' recent window
    positives: int | None  # positive rows among them, where the family counts them
    challenger: dict[str, float]  # drifted segments, recent rows
    champion: dict[str, float]
    challenger_rest: dict[str, float]  # every other segment (non-inferiority)
    champion_rest: dict[str, float]


def segment_decision(
    family: ModelFamily,
    evidence: SegmentEvidence,
    margin: float,
    tolerance: float,
    floor_metrics: dict[str, float],
    min_rows: int = MIN_SEGMENT_ROWS,
    min_positives: int = MIN_SEGMENT_POSITIVES,
) -> Decision:
    """A drift retrain must win where the drift is and not lose elsewhere:

    - below ``min_rows`` scored rows (or ``min_positives`` positives, where counted) in the
      drifted segments' recent window it WAITS: no decision on noise, nothing refused;
    - floors and baselines on ``floor_metrics`` (the whole hold-out);
    - on the drifted segments' recent rows its primary metric beats the champion's by
      ``margin`` (relative);
    - on the other segments it is not worse than the champion's by more than
      ``tolerance`` (relative; not judged when those rows cannot be scored).
    """
    primary, where = family.primary_metric, ", ".join(evidence.segments)
    short = []
    if evidence.rows < min_rows:
        short.append(f"{evidence.rows} scored rows (needs {min_rows})")
    # Few faults where the drift is (a replaced sensor brings no faults, only false alarms):
    # the primary metric cannot rank two models there, a quiet metric (how often each
    # alarms on normal rows) can; without one, wait.
    quiet = family.quiet_metric
    if evidence.positives is not None:
        few = evidence.positives < min_positives
    else:  # not counted: a tie (0 vs 0 F1 on a segment without faults) says as much
        few = evidence.challenger.get(primary) == evidence.champion.get(primary)
    if few and quiet and all(math.isfinite(d.get(quiet, math.nan))
                             for d in (evidence.challenger, evidence.champion)):
        primary = quiet
    elif evidence.positives is not None and evidence.positives < min_positives:
        short.append(f"{evidence.positives} positives (needs {min_positives})")
    value = evidence.challenger.get(primary, math.nan)
    base = evidence.champion.get(primary, math.nan)
    if not short and not (math.isfinite(value) and math.isfinite(base)):
        short.append(f"{primary} not measurable there (challenger {value}, champion {base})")
    if short:
        return Decision(False, f"waiting for evidence on drifted {where}: "
                        + ", ".join(short), waiting=True)
    floors = promotion_decision(family, floor_metrics, None, margin, first_model=False)
    if not floors.passed:
        return Decision(False, f"on the whole hold-out: {floors.reason}")
    lower_is_better = family.metric_lower_is_better(primary)
    gain = _relative_gain(lower_is_better, value, base)
    won = (f"{primary} {value:.4g} vs champion {base:.4g} on drifted {where} "
           f"({evidence.rows} recent rows): {gain:+.2%} (margin {margin:.2%})")
    if not (gain > 0 and gain >= margin):
        return Decision(False, won)
    judged = family.primary_metric  # elsewhere: the family's own metric
    rest, rest_base = (evidence.challenger_rest.get(judged, math.nan),
                       evidence.champion_rest.get(judged, math.nan))
    if math.isfinite(rest) and math.isfinite(rest_base):
        kept = _relative_gain(not family.higher_is_better, rest, rest_base)
        elsewhere = f"{judged} {rest:.4g} vs {rest_base:.4g} elsewhere: {kept:+.2%}"
        if kept < -tolerance:
            return Decision(False, f"{won}; but {elsewhere} (more than {tolerance:.2%} "
                            "worse)")
    else:
        elsewhere = "other segments not scorable"
    return Decision(True, f"{won}; {elsewhere} (tolerance {tolerance:.2%}); "
                    f"{floors.reason.removeprefix('first model: ')}")


# -- evidence: which rows, which numbers ------------------------------------------------


@dataclass(frozen=True)
class GateEvidence:
    """The numbers the gate decides on, and which rows they come from."""

    scope: str  # for the reason: "whole hold-out" or "hold-out of the last 6 h (...)"
    rows: int  # feature rows handed to the family's evaluate() (it keeps their test blocks)
    challenger: dict[str, float]
    champion_version: str | None  # None: no champion yet; "unevaluable": it could not score
    champion: dict[str, float] | None
    # The challenger on the whole hold-out when the comparison uses a recent window: the
    # absolute floors are checked there (None: on ``challenger``).
    floors: dict[str, float] | None = None
    # A recent window whose hold-out cannot rank the two models on the primary metric (no
    # fault among its test rows, or fewer than the family's min_positives): both
    # models' metrics there ("challenger", "champion"); the family's quiet metric decides,
    # ``challenger`` and ``champion`` are then the whole hold-out (``quiet_window_decision``).
    quiet: dict[str, dict[str, float]] | None = None
    # A drift retrain with declared segments: judged there (``segment_decision``).
    segment: SegmentEvidence | None = None


def recent_rows(features: pl.DataFrame, ts: str, hours: float) -> pl.DataFrame:
    """The rows of the last ``hours`` hours before the newest row (data time, not the wall
    clock: a backfilled or replayed table has its own "now")."""
    if features.is_empty():
        return features
    newest = features.get_column(ts).max()
    return features.filter(pl.col(ts) >= newest - timedelta(hours=hours))


def unscorable(whole: dict[str, float], *recent: dict[str, float] | None) -> list[str]:
    """Metrics finite on the whole hold-out but not on the recent one: the recent window
    holds too few test rows (none, or one class only) to rank two models on."""
    return sorted({k for metrics in recent if metrics is not None
                   for k, v in whole.items()
                   if math.isfinite(v) and not math.isfinite(metrics.get(k, math.nan))})


def gate_evidence(
    registry: ModelRegistry,
    module: Any,
    features: pl.DataFrame,
    challenger_holdout: dict[str, float],
    ts: str,
    recent_hours: float,
    warn: Callable[[str], None],
) -> GateEvidence:
    """Challenger and champion metrics on the SAME rows: the last ``recent_hours`` of
    ``features`` when > 0 and scorable there, else the whole table (the challenger's
    ``challenger_holdout`` already is that)."""
    note = ""
    if recent_hours > 0:
        recent = recent_rows(features, ts, recent_hours)
        found = registry.holdout_metrics_of(module, CHALLENGER, recent)
        if found is None:  # the search registered it moments ago
            raise RuntimeError(f"{registered_name(module.FAMILY)} lost its challenger alias")
        champion_version, champion = _champion_on_holdout(warn, registry, module, recent)
        missing = unscorable(challenger_holdout, found[1], champion)
        window = f"last {recent_hours:g} h"
        cannot = f"the {window} ({recent.height} rows) cannot be scored ({', '.join(missing)} "
        few = None if missing else _few_positives(module.FAMILY, found[1])
        if missing or few is not None:
            # no fault among the window's test rows, or a handful: one found or missed more
            # flips the primary metric; how often each model alarms on its normal rows ranks
            why = (cannot + "not finite: no fault among its test rows)" if missing else
                   f"the {window} ({recent.height} rows) holds {few} positive test rows "
                   f"(fewer than {module.FAMILY.min_positives} to rank on "
                   f"{module.FAMILY.primary_metric})")
            quiet = _quiet_evidence(registry, module, features, challenger_holdout, found[1],
                                    champion, champion_version, warn)
            if quiet is not None:
                return replace(quiet, scope=f"{why}; {quiet.scope}")
        if not missing:
            start, end = (recent.get_column(ts).min(), recent.get_column(ts).max())
            return GateEvidence(f"hold-out of the {window} ({start:%Y-%m-%d %H:%M} .. "
                                f"{end:%Y-%m-%d %H:%M}, {recent.height} rows; floors on the "
                                "whole hold-out)", recent.height, found[1],
                                champion_version, champion, floors=challenger_holdout)
        note = cannot + "not finite); fell back to the "
        warn(note + "whole hold-out")
    champion_version, champion = _champion_on_holdout(warn, registry, module, features)
    return GateEvidence(f"{note}whole hold-out", features.height, challenger_holdout,
                        champion_version, champion)


def _few_positives(family: ModelFamily, metrics: dict[str, float]) -> int | None:
    """The number of positive rows a family with a quiet metric scored on, when it is below
    the family's ``min_positives`` (None: enough, or not counted)."""
    count = metrics.get(POSITIVES)
    if family.quiet_metric is None or count is None or not math.isfinite(count):
        return None
    return int(count) if count < family.min_positives else None


def _quiet_evidence(
    registry: ModelRegistry,
    module: Any,
    features: pl.DataFrame,
    challenger_whole: dict[str, float],
    challenger_recent: dict[str, float],
    champion_recent: dict[str, float] | None,
    champion_version: str | None,
    warn: Callable[[str], None],
) -> GateEvidence | None:
    """Evidence for ``quiet_window_decision``, when the family has a quiet metric that both
    models have on the recent window (it has normal rows) and a champion to compare with."""
    metric = module.FAMILY.quiet_metric
    if metric is None or champion_recent is None:
        return None
    if not all(math.isfinite(m.get(metric, math.nan))
               for m in (challenger_recent, champion_recent)):
        return None
    _, champion_whole = _champion_on_holdout(warn, registry, module, features)
    if champion_whole is None:
        return None
    return GateEvidence(f"{metric} there, {module.FAMILY.primary_metric} and floors on the "
                        "whole hold-out", features.height, challenger_whole, champion_version,
                        champion_whole, quiet={"challenger": challenger_recent,
                                               "champion": champion_recent})


def gate_decision(family: ModelFamily, evidence: GateEvidence, margin: float,
                  tolerance: float = DRIFT_TOLERANCE, min_rows: int = MIN_SEGMENT_ROWS,
                  min_positives: int = MIN_SEGMENT_POSITIVES) -> Decision:
    if evidence.segment is not None:
        decision = segment_decision(family, evidence.segment, margin, tolerance,
                                    evidence.floors or evidence.challenger, min_rows,
                                    min_positives)
    elif evidence.quiet is not None and evidence.champion is not None:
        decision = quiet_window_decision(family, evidence.challenger, evidence.champion,
                                         evidence.quiet["challenger"],
                                         evidence.quiet["champion"], margin, tolerance)
    else:
        decision = promotion_decision(family, evidence.challenger, evidence.champion, margin,
                                      floor_metrics=evidence.floors)
    return Decision(decision.passed, f"{evidence.scope}: {decision.reason}", decision.waiting)


def segment_evidence(
    registry: ModelRegistry,
    module: Any,
    features: pl.DataFrame,
    challenger_holdout: dict[str, float],
    ts: str,
    column: str,
    segments: tuple[str, ...],
    recent_hours: float,
    warn: Callable[[str], None],
) -> GateEvidence | None:
    """Challenger and champion on the drifted segments' recent rows and on every other
    segment's rows (None: no champion to compare with, or no such column)."""
    if column not in features.columns:
        warn(f"drifted segments {segments} given but the features have no {column!r}")
        return None
    inside = pl.col(column).cast(pl.String).is_in(list(segments))
    drifted = features.filter(inside)
    if recent_hours > 0:
        drifted = recent_rows(drifted, ts, recent_hours)
    rest = features.filter(~inside)
    champion_version, champion = _champion_on_holdout(warn, registry, module, drifted)
    if champion is None:
        return None
    found = registry.holdout_metrics_of(module, CHALLENGER, drifted)
    if found is None:
        raise RuntimeError(f"{registered_name(module.FAMILY)} lost its challenger alias")
    challenger = found[1]
    _, champion_rest = _champion_on_holdout(warn, registry, module, rest)
    rest_found = registry.holdout_metrics_of(module, CHALLENGER, rest)
    rows = challenger.get("rows", math.nan)
    positives = challenger.get(POSITIVES, math.nan)
    window = f"last {recent_hours:g} h of " if recent_hours > 0 else ""
    return GateEvidence(
        f"{window}drifted {column} {', '.join(segments)} ({drifted.height} rows; the rest "
        f"{rest.height} rows; floors on the whole hold-out)", drifted.height, challenger,
        champion_version, champion, floors=challenger_holdout,
        segment=SegmentEvidence(
            segments, int(rows) if math.isfinite(rows) else drifted.height,
            int(positives) if math.isfinite(positives) else None, challenger, champion,
            rest_found[1] if rest_found else {}, champion_rest or {}))


def _champion_on_holdout(
    warn: Callable[[str], None], registry: ModelRegistry, module: Any, features: pl.DataFrame
) -> tuple[str | None, dict[str, float] | None]:
    """The champion's metrics on the hold-out of ``features`` (None, None: no champion)."""
    try:
        found = registry.holdout_metrics_of(module, CHAMPION, features)
    except Exception as exc:
        # A champion that cannot score today's features (schema moved on, artifact lost)
        # cannot defend its title: the challenger is then judged on the floors alone.
        warn(f"champion could not be evaluated on the current hold-out: {exc}")
        return "unevaluable", None
    return (None, None) if found is None else found


# -- a challenger, end to end ------------------------------------------------------------


@dataclass(frozen=True)
class GateSettings:
    """How a challenger is trained and judged (``TrainConfig`` in the Dagster layer)."""

    budget: int = 3  # hyper-parameter candidates
    seed: int = 0
    margin: float = 0.01  # relative improvement of the primary metric needed to promote
    tolerance: float = DRIFT_TOLERANCE  # quiet-window decisions: how much worse it may be
    threads: int = 1  # BLAS/OpenMP threads while training and evaluating
    recent_hours: float = 0.0  # > 0: compare on the hold-out of the table's last N hours
    tags: dict[str, str] = field(default_factory=dict)  # extra MLflow run tags
    # A drift retrain's drifted segments (values of ``segment_column``): judged there
    segments: tuple[str, ...] = ()
    segment_column: str | None = None
    min_segment_rows: int = MIN_SEGMENT_ROWS
    min_segment_positives: int = MIN_SEGMENT_POSITIVES


@dataclass(frozen=True)
class Challenge:
    """A trained, registered challenger and its gate verdict."""

    result: SearchResult
    evidence: GateEvidence
    decision: Decision


def challenge(
    registry: ModelRegistry,
    module: FamilyModule,
    features: pl.DataFrame,
    data_versions: dict[str, int | None],
    ts: str,
    settings: GateSettings,
    warn: Callable[[str], None],
) -> Challenge:
    """Search, register the best candidate as ``challenger``, judge it against the champion
    on the same rows, and record the verdict on the version."""
    family = gate_family(module.FAMILY)  # the registry's floors with the plant's overrides
    with threadpool_limits(limits=settings.threads):
        result = registry.run_search(module, features, settings.budget, settings.seed,
                                     data_versions, extra_tags=settings.tags)
        evidence = None
        if settings.segments and settings.segment_column:
            evidence = segment_evidence(registry, module, features, result.holdout_metrics,
                                        ts, settings.segment_column, settings.segments,
                                        settings.recent_hours, warn)
        if evidence is None:
            evidence = gate_evidence(registry, module, features, result.holdout_metrics, ts,
                                     settings.recent_hours, warn)
    decision = gate_decision(family, evidence, settings.margin, settings.tolerance,
                             settings.min_segment_rows, settings.min_segment_positives)
    registry.record_gate(result.model_name, result.version, decision)
    if decision.waiting:  # neither passed nor refused: the champion step leaves the alias
        registry.client.set_model_version_tag(result.model_name, result.version, GATE_TAG,
                                              "waiting")
    return Challenge(result, evidence, decision)


# -- promotion -------------------------------------------------------------------------


class NotPromotable(RuntimeError):
    """The champion alias cannot move: no challenger, or its gate did not pass."""


class WaitingForEvidence(NotPromotable):
    """The challenger's gate waits for more evidence: the champion stays, nothing failed."""


@dataclass(frozen=True)
class Promotion:
    name: str  # registered model
    version: str  # the new champion
    previous: str | None  # the champion before (None: the first one)
    run_id: str
    gate_reason: str


def promote(registry: ModelRegistry, family: str) -> Promotion:
    """Point ``champion`` at the current challenger, if (and only if) its recorded gate
    verdict is "passed"."""
    name = registered_name(family)
    challenger = registry.version_by_alias(name, CHALLENGER)
    if challenger is None:
        raise NotPromotable(f"{name} has no challenger: materialize models/{family} first")
    if challenger.tags.get(GATE_TAG) == "waiting":
        raise WaitingForEvidence(
            f"{name} v{challenger.version}: {challenger.tags.get(GATE_REASON_TAG, '')}")
    if challenger.tags.get(GATE_TAG) != "passed":
        raise NotPromotable(
            f"{name} v{challenger.version} did not pass its promotion gate "
            f"({challenger.tags.get(GATE_REASON_TAG, 'no verdict recorded')})"
        )
    previous = registry.champion(name)
    registry.set_champion(name, challenger.version)
    return Promotion(name, str(challenger.version),
                     None if previous is None else str(previous.version),
                     challenger.run_id or "", challenger.tags.get(GATE_REASON_TAG, ""))


# -- what a person reads of a challenge (the Dagster layer shows it as metadata) ----------


def challenge_summary(outcome: Challenge, feature_rows: int) -> dict[str, Any]:
    """The search and its verdict as plain facts: ids, metrics, trials, the split."""
    from mfg_assets.console import rounded_all

    result = outcome.result
    summary: dict[str, Any] = {
        "mlflow_run_id": result.parent_run_id,
        "mlflow_best_trial_run_id": result.best_run_id,
        "registered_model": result.model_name,
        "model_version": result.version,
        "model_artifacts": result.artifact_uri,
        "data_versions": result.data_versions,
        "best_params": json.loads(json.dumps(result.params, default=str)),
        "trials": len(result.trials),
        "trials_failed": sum(1 for t in result.trials if t.error),
        "feature_rows": feature_rows,
        **{f"holdout/{k}": v for k, v in rounded_all(result.holdout_metrics).items()},
        **{f"validation/{k}": v for k, v in rounded_all(result.metrics).items()},
        "gate": outcome.decision.reason,
        "gate_verdict": outcome.decision.verdict,
    }
    split = result.info.get("split")
    if split:  # how the rows were split, and rows / class balance per part
        summary["split"] = split.get("reason", split.get("method", ""))
        summary["split_parts"] = json.loads(json.dumps(
            {k: split[k] for k in ("method", "parts", "notes") if k in split}, default=str))
    return summary


def gate_summary(outcome: Challenge, margin: float) -> dict[str, Any]:
    """The gate's verdict and the evidence behind it, as plain facts."""
    decision, evidence = outcome.decision, outcome.evidence
    segment = evidence.segment
    return {
        "verdict": decision.verdict,
        "reason": decision.reason,
        "challenger_version": outcome.result.version,
        "champion_version": evidence.champion_version or "none",
        "gate_window": evidence.scope,
        "gate_rows": evidence.rows,
        "challenger_holdout": evidence.challenger,
        "recent_window_quiet_metric": evidence.quiet or {},
        "challenger_floor_metrics": (evidence.floors if evidence.floors is not None
                                     else evidence.challenger),
        "champion_holdout": evidence.champion or {},
        # the simple baselines measured with the challenger on the same rows
        "baselines": {k: v for k, v in (evidence.floors or evidence.challenger).items()
                      if k.startswith("baseline.")},
        "drifted_segments": {} if segment is None else {
            "segments": list(segment.segments), "rows": segment.rows,
            "positives": segment.positives, "challenger_rest": segment.challenger_rest,
            "champion_rest": segment.champion_rest},
        "margin_relative": margin,
    }
