"""Rollouts: a new model goes to a canary subset of edges, is compared, then spreads or not.

    rollout = start_rollout(lake, store, model="vision_defect", version="4",
                            candidate_bundles={"edge-cam01": "...", "edge-cam02": "..."},
                            canary_edges=["edge-cam02"])
    rollout = advance(lake, store, rollout.rollout_id, predictions, labels)  # periodically
    rollout.state, rollout.decision, rollout.reason

Comparison (plain functions over polars frames): the canary edges' predictions made by
the candidate bundles against the control edges' predictions made by the bundles they ran
before, over the same window. Figures per group: predictions, accuracy against labels
joined by ``source_id`` (e.g. QA labels of inspection images), positive rate (defect /
anomaly share), error rate (telemetry ERROR lines per prediction), latency p95.

Canary (``choose_canary``, the one rule): an explicit list, else the first
``ceil(canary_fraction * fleet)`` edges with a new bundle in sorted order; at least one
canary, never the whole fleet.

Decision: ``wait`` while either group has too few predictions (or labels, when labels
exist at all); ``rollback`` when the canary is worse beyond the policy's tolerances;
``promote`` otherwise. With ``require_approval`` a promotion waits for an operator.

State machine, one row per rollout in the Delta table ``edge.rollouts``:

    canary --promote--> promoted            (or awaiting_approval --approve--> promoted)
    canary --rollback--> rolled_back        (awaiting_approval can still roll back)
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import polars as pl

from mfg_assets.edge.store import BundleStore
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.names import EDGE_ROLLOUTS
from mfg_assets.lake.registry import TableSpec, table

Decision = Literal["promote", "rollback", "wait"]
STATES = ("canary", "awaiting_approval", "promoted", "rolled_back")
TERMINAL = ("promoted", "rolled_back")
ROLLOUTS: TableSpec = table(EDGE_ROLLOUTS)
ROLLOUTS_TABLE = ROLLOUTS.qualified_name


@dataclass(frozen=True)
class RolloutPolicy:
    canary_fraction: float = 0.25  # of the fleet, at least one edge, when no list is given
    window: timedelta = timedelta(hours=1)  # compare the most recent window only
    min_predictions: int = 50  # per group
    min_labelled: int = 30  # per group, when labels exist at all
    max_accuracy_drop: float = 0.01  # canary may be at most one point less accurate
    max_rate_deviation: float = 0.05  # |positive rate difference|, used without labels
    max_error_rate: float = 0.02  # errors per prediction on the canary
    max_latency_ratio: float = 1.5  # canary p95 <= ratio * control p95 + slack
    latency_slack_ms: float = 2.0
    # p95 once each group has this many predictions (5 beyond it), the median before: the
    # p95 of 27 predictions is their second-slowest, and one scheduling hiccup on a busy
    # box rolled back a canary that was more accurate (7.6 ms vs a 7.6 ms budget)
    p95_min_predictions: int = 100
    normal_values: tuple[str, ...] = ("ok", "false", "normal")  # values that are not alarms


@dataclass(frozen=True)
class GroupMetrics:
    predictions: int
    labelled: int
    accuracy: float
    positive_rate: float
    error_rate: float
    latency_p95_ms: float
    latency_p50_ms: float


@dataclass(frozen=True)
class Comparison:
    decision: Decision
    reason: str
    canary: GroupMetrics
    control: GroupMetrics

    def metrics(self) -> dict[str, Any]:
        return {"canary": self.canary.__dict__, "control": self.control.__dict__}


# -- comparison --------------------------------------------------------------------------------


def group_metrics(
    predictions: pl.DataFrame,
    labels: pl.DataFrame | None,
    errors: int,
    policy: RolloutPolicy,
) -> GroupMetrics:
    """Figures of one group's predictions (columns: source_id, value, latency_ms)."""
    n = predictions.height
    value = pl.col("value").cast(pl.String).str.to_lowercase()
    positive = (
        predictions.select((~value.is_in(list(policy.normal_values))).mean()).item() if n else None
    )
    latency = predictions.select(pl.col("latency_ms").quantile(0.95)).item() if n else None
    median = predictions.select(pl.col("latency_ms").median()).item() if n else None
    labelled, accuracy = 0, math.nan
    if labels is not None and labels.height and n:
        joined = predictions.select("source_id", value.alias("v")).join(
            labels.select("source_id", pl.col("label").cast(pl.String).str.to_lowercase()),
            on="source_id",
            how="inner",
        ).filter(pl.col("label").is_not_null())
        labelled = joined.height
        if labelled:
            accuracy = float(joined.select((pl.col("v") == pl.col("label")).mean()).item())
    return GroupMetrics(
        predictions=n,
        labelled=labelled,
        accuracy=accuracy,
        positive_rate=math.nan if positive is None else float(positive),
        error_rate=errors / n if n else math.nan,
        latency_p95_ms=math.nan if latency is None else float(latency),
        latency_p50_ms=math.nan if median is None else float(median),
    )


def _errors(telemetry: pl.DataFrame | None, edges: Sequence[str]) -> int:
    if telemetry is None or telemetry.height == 0:
        return 0
    rows = telemetry.filter(pl.col("edge_id").is_in(list(edges)))
    return int(rows.get_column("log_errors").sum() or 0)


def compare(
    predictions: pl.DataFrame,
    *,
    canary: Mapping[str, str],
    control: Mapping[str, str],
    labels: pl.DataFrame | None = None,
    telemetry: pl.DataFrame | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    policy: RolloutPolicy = RolloutPolicy(),
) -> Comparison:
    """Canary vs control over ``[since, until]``.

    ``predictions``: ``silver.edge_predictions`` rows (edge_id, bundle_id, source_id, value,
    latency_ms, ts). ``canary``/``control``: edge id -> the bundle whose predictions count
    (a canary edge's predictions by its old bundle, before the swap, are not the canary's).
    ``labels``: source_id, label. ``telemetry``: ``silver.edge_telemetry`` (edge_id, ts,
    log_errors).
    """
    def window(frame: pl.DataFrame) -> pl.DataFrame:
        if since is not None:
            frame = frame.filter(pl.col("ts") >= since)
        if until is not None:
            frame = frame.filter(pl.col("ts") <= until)
        return frame

    def of(group: Mapping[str, str]) -> pl.DataFrame:
        pairs = pl.DataFrame(
            {"edge_id": list(group), "bundle_id": list(group.values())},
            schema={"edge_id": pl.String, "bundle_id": pl.String},
        )
        return window(predictions).join(pairs, on=["edge_id", "bundle_id"], how="inner")

    telemetry = window(telemetry) if telemetry is not None else None
    c = group_metrics(of(canary), labels, _errors(telemetry, list(canary)), policy)
    k = group_metrics(of(control), labels, _errors(telemetry, list(control)), policy)
    decision, reason = decide(c, k, policy)
    return Comparison(decision, reason, c, k)


def decide(canary: GroupMetrics, control: GroupMetrics, policy: RolloutPolicy) -> tuple[
    Decision, str
]:
    """promote / rollback / wait, with the reason a person reads."""
    if min(canary.predictions, control.predictions) < policy.min_predictions:
        return "wait", (
            f"not enough data: {canary.predictions} canary and {control.predictions} control "
            f"predictions (need {policy.min_predictions} each)"
        )
    has_labels = canary.labelled > 0 or control.labelled > 0
    if has_labels and min(canary.labelled, control.labelled) < policy.min_labelled:
        return "wait", (
            f"not enough labels: {canary.labelled} canary and {control.labelled} control "
            f"labelled predictions (need {policy.min_labelled} each)"
        )
    problems = []
    if has_labels:
        drop = control.accuracy - canary.accuracy
        if drop > policy.max_accuracy_drop:
            problems.append(
                f"accuracy {canary.accuracy:.3f} vs control {control.accuracy:.3f} "
                f"(-{100 * drop:.1f} points > {100 * policy.max_accuracy_drop:.1f})"
            )
    else:
        deviation = abs(canary.positive_rate - control.positive_rate)
        if deviation > policy.max_rate_deviation:
            problems.append(
                f"positive rate {canary.positive_rate:.3f} vs control "
                f"{control.positive_rate:.3f} (deviation {deviation:.3f} > "
                f"{policy.max_rate_deviation:.3f})"
            )
    if canary.error_rate > policy.max_error_rate:
        problems.append(
            f"error rate {canary.error_rate:.3f} > {policy.max_error_rate:.3f} per prediction"
        )
    tail = min(canary.predictions, control.predictions) >= policy.p95_min_predictions
    name, mine, theirs = (("p95", canary.latency_p95_ms, control.latency_p95_ms) if tail else
                          ("p50", canary.latency_p50_ms, control.latency_p50_ms))
    budget = policy.max_latency_ratio * theirs + policy.latency_slack_ms
    if mine > budget:
        problems.append(
            f"latency {name} {mine:.1f} ms > {budget:.1f} ms "
            f"({policy.max_latency_ratio}x control {theirs:.1f} ms + slack)"
        )
    if problems:
        return "rollback", "canary worse than control: " + "; ".join(problems)
    basis = (
        f"accuracy {canary.accuracy:.3f} vs {control.accuracy:.3f}"
        if has_labels
        else f"positive rate {canary.positive_rate:.3f} vs {control.positive_rate:.3f}"
    )
    return "promote", (
        f"canary within tolerances over {canary.predictions}/{control.predictions} "
        f"predictions: {basis}, latency {name} {mine:.1f} vs {theirs:.1f} ms"
    )


# -- state -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rollout:
    rollout_id: str
    model: str
    candidate_version: str
    state: str
    canary_edges: tuple[str, ...]
    control_edges: tuple[str, ...]
    candidate_bundles: dict[str, str]
    baseline_bundles: dict[str, str]
    require_approval: bool
    started_at: datetime
    updated_at: datetime
    approved_by: str | None = None
    decision: str | None = None
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {
            "rollout_id": self.rollout_id,
            "model": self.model,
            "candidate_version": self.candidate_version,
            "state": self.state,
            "canary_edges": json.dumps(list(self.canary_edges)),
            "control_edges": json.dumps(list(self.control_edges)),
            "candidate_bundles": json.dumps(self.candidate_bundles, sort_keys=True),
            "baseline_bundles": json.dumps(self.baseline_bundles, sort_keys=True),
            "require_approval": self.require_approval,
            "approved_by": self.approved_by,
            "decision": self.decision,
            "reason": self.reason,
            "metrics": json.dumps(self.metrics, sort_keys=True, default=_nan_free),
            "started_at": self.started_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Rollout:
        return cls(
            rollout_id=row["rollout_id"],
            model=row["model"],
            candidate_version=row["candidate_version"],
            state=row["state"],
            canary_edges=tuple(json.loads(row["canary_edges"])),
            control_edges=tuple(json.loads(row["control_edges"])),
            candidate_bundles=json.loads(row["candidate_bundles"]),
            baseline_bundles=json.loads(row["baseline_bundles"]),
            require_approval=bool(row["require_approval"]),
            started_at=row["started_at"],
            updated_at=row["updated_at"],
            approved_by=row["approved_by"],
            decision=row["decision"],
            reason=row["reason"],
            metrics=json.loads(row["metrics"]),
        )


def _nan_free(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else str(value)


def _clean(doc: Any) -> Any:
    """NaN -> None, recursively (Delta and JSON readers both prefer nulls)."""
    if isinstance(doc, dict):
        return {k: _clean(v) for k, v in doc.items()}
    if isinstance(doc, float) and math.isnan(doc):
        return None
    return doc


def save(lake: Lake, rollout: Rollout) -> None:
    spec = ROLLOUTS
    frame = pl.DataFrame([rollout.row()], schema=spec.polars_schema)
    if not lake.exists(spec):
        lake.append(spec, frame, rollout=rollout.rollout_id)
        return
    # rollout ids are generated here (hex), so the predicate cannot be injected into
    lake.replace_where(
        spec, frame, f"rollout_id = '{rollout.rollout_id}'", rollout=rollout.rollout_id
    )


def load(lake: Lake, rollout_id: str) -> Rollout:
    rows = lake.read(ROLLOUTS).filter(pl.col("rollout_id") == rollout_id)
    if rows.height != 1:
        raise KeyError(f"rollout {rollout_id!r}: {rows.height} rows in {ROLLOUTS_TABLE}")
    return Rollout.from_row(rows.row(0, named=True))


def active_rollouts(lake: Lake) -> list[Rollout]:
    rows = lake.read(ROLLOUTS).filter(~pl.col("state").is_in(list(TERMINAL)))
    return [Rollout.from_row(r) for r in rows.iter_rows(named=True)]


# -- transitions -------------------------------------------------------------------------------


def choose_canary(
    edges: Sequence[str],
    fraction: float,
    *,
    eligible: Sequence[str] | None = None,
    explicit: Sequence[str] = (),
) -> list[str]:
    """THE canary rule: which of a model's ``edges`` run the candidate first.

    Only ``eligible`` edges can be canaries (those with a new bundle; default: all of them):
    a canary running the bundle it ran before would compare the old bundle with itself.
    An ``explicit`` list wins if each of its edges is eligible; otherwise the first
    ``ceil(fraction * fleet)`` eligible edges in sorted order (deterministic). Always at
    least one canary and at least one control edge.
    """
    ordered = sorted(edges)
    if len(ordered) < 2:
        raise ValueError("a canary needs at least two edges (one canary, one control)")
    pool = ordered if eligible is None else sorted(set(eligible) & set(ordered))
    if explicit:
        wrong = sorted(set(explicit) - set(pool))
        if wrong:
            raise ValueError(f"canary edges {wrong} have no new bundle (edges with one: {pool})")
        canary = sorted(set(explicit))
    else:
        count = min(len(ordered) - 1, max(1, math.ceil(fraction * len(ordered))))
        canary = pool[:count]
    if not canary:
        raise ValueError(f"no edge of {ordered} has a new bundle to try")
    if len(canary) >= len(ordered):
        raise ValueError("every edge is a canary: nothing to compare against")
    return canary


def start_rollout(
    lake: Lake,
    store: BundleStore,
    *,
    model: str,
    version: str | int,
    candidate_bundles: Mapping[str, str],
    canary_edges: Sequence[str] | None = None,
    require_approval: bool = False,
    policy: RolloutPolicy = RolloutPolicy(),
    now: datetime | None = None,
) -> Rollout:
    """Assign the candidate bundles to the canary edges; the rest stay on what they run."""
    now = now or datetime.now(UTC)
    edges = sorted(candidate_bundles)
    canary = choose_canary(edges, policy.canary_fraction, explicit=canary_edges or ())
    control = [e for e in edges if e not in canary]
    baseline = {}
    for edge in edges:
        current = store.assignment(edge)
        if current is None:
            raise ValueError(f"edge {edge} runs no bundle yet: assign it directly, no rollout")
        baseline[edge] = current.bundle_id
    rollout = Rollout(
        rollout_id=f"ro-{now:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}",
        model=model,
        candidate_version=str(version),
        state="canary",
        canary_edges=tuple(canary),
        control_edges=tuple(control),
        candidate_bundles=dict(candidate_bundles),
        baseline_bundles=baseline,
        require_approval=require_approval,
        started_at=now,
        updated_at=now,
        reason=f"canary on {', '.join(canary)}",
    )
    for edge in canary:
        store.assign(edge, candidate_bundles[edge], by="rollout", reason="canary",
                     rollout_id=rollout.rollout_id)
    save(lake, rollout)
    return rollout


def _promote(store: BundleStore, rollout: Rollout) -> None:
    for edge, bundle in sorted(rollout.candidate_bundles.items()):
        store.assign(edge, bundle, by="rollout", reason="promoted", rollout_id=rollout.rollout_id)


def _roll_back(store: BundleStore, rollout: Rollout) -> None:
    for edge in rollout.canary_edges:
        store.assign(edge, rollout.baseline_bundles[edge], by="rollout", reason="rolled back",
                     rollout_id=rollout.rollout_id)


def advance(
    lake: Lake,
    store: BundleStore,
    rollout_id: str,
    predictions: pl.DataFrame,
    labels: pl.DataFrame | None = None,
    telemetry: pl.DataFrame | None = None,
    *,
    policy: RolloutPolicy = RolloutPolicy(),
    now: datetime | None = None,
) -> Rollout:
    """Compare, decide, act (assignments) and record the new state."""
    rollout = load(lake, rollout_id)
    if rollout.state in TERMINAL:
        return rollout
    now = now or datetime.now(UTC)
    since = max(rollout.started_at, now - policy.window)
    comparison = compare(
        predictions,
        canary={e: rollout.candidate_bundles[e] for e in rollout.canary_edges},
        control={e: rollout.baseline_bundles[e] for e in rollout.control_edges},
        labels=labels,
        telemetry=telemetry,
        since=since,
        until=now,
        policy=policy,
    )
    state, reason = rollout.state, comparison.reason
    if comparison.decision == "rollback":
        _roll_back(store, rollout)
        state = "rolled_back"
    elif comparison.decision == "promote":
        if rollout.require_approval and rollout.approved_by is None:
            state = "awaiting_approval"
            reason = f"{comparison.reason}; waiting for an operator's approval"
        else:
            _promote(store, rollout)
            state = "promoted"
    updated = replace(
        rollout,
        state=state,
        decision=comparison.decision,
        reason=reason,
        metrics=_clean(comparison.metrics()),
        updated_at=now,
    )
    save(lake, updated)
    return updated


def approve(
    lake: Lake, store: BundleStore, rollout_id: str, operator: str, now: datetime | None = None
) -> Rollout:
    """An operator's approval: promotes a waiting rollout, or pre-approves a running one."""
    rollout = load(lake, rollout_id)
    if rollout.state in TERMINAL:
        raise ValueError(f"rollout {rollout_id} is already {rollout.state}")
    now = now or datetime.now(UTC)
    if rollout.state == "awaiting_approval":
        _promote(store, rollout)
        updated = replace(rollout, state="promoted", approved_by=operator, updated_at=now,
                          reason=f"approved by {operator}; {rollout.reason}")
    else:
        updated = replace(rollout, approved_by=operator, updated_at=now)
    save(lake, updated)
    return updated


def roll_back(
    lake: Lake, store: BundleStore, rollout_id: str, operator: str, reason: str = "",
    now: datetime | None = None,
) -> Rollout:
    """An operator stops a rollout: canary edges go back to their previous bundles."""
    rollout = load(lake, rollout_id)
    if rollout.state in TERMINAL:
        raise ValueError(f"rollout {rollout_id} is already {rollout.state}")
    _roll_back(store, rollout)
    updated = replace(rollout, state="rolled_back", decision="rollback",
                      reason=f"rolled back by {operator}: {reason}".rstrip(": "),
                      updated_at=now or datetime.now(UTC))
    save(lake, updated)
    return updated
