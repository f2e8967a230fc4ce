"""Deployment steps: take each model's newest bundles to its edges (no Dagster).

Per model, ``run_rollouts`` either advances the running rollout (approval, then the
comparison of canary and control on the latest evidence) or starts one for the edges whose
newest bundle differs from what they run: an edge running nothing yet gets its bundle
directly, a fleet of one waits for an operator, the canary is chosen by
``fleet/rollout.choose_canary``, and bundles already rolled out (or back) are not retried.
``rollout_summary`` says what happened, as plain data for a person.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from mfg_assets.edge.store import BundleStore
from mfg_assets.fleet import rollout as ro
from mfg_assets.fleet.bundles import BUNDLES
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.names import (
    SILVER_EDGE_PREDICTIONS,
    SILVER_EDGE_TELEMETRY,
    SILVER_INSPECTION_IMAGES,
)
from mfg_assets.lake.registry import table
from mfg_assets.ml.families import FAMILIES
from mfg_assets.settings import get_settings


@dataclass
class RolloutStep:
    """What one model's deployment step did this time."""

    model: str
    action: str  # first_deployment | started | advanced | approved | unchanged | waiting
    detail: str
    rollout: ro.Rollout | None = None
    assigned: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeploySettings:
    """How a deployment step runs: the policy, an explicit canary list, approvals."""

    policy: ro.RolloutPolicy = field(default_factory=ro.RolloutPolicy)
    canary_edges: tuple[str, ...] = ()
    require_approval: bool = False
    approve: bool = False
    operator: str = "operator"
    rollout_id: str = ""


def run_policy(canary_fraction: float = ro.RolloutPolicy.canary_fraction,
               window_minutes: float = 60.0,
               max_accuracy_drop: float = ro.RolloutPolicy.max_accuracy_drop,
               min_predictions: int | None = None,
               min_labelled: int | None = None) -> ro.RolloutPolicy:
    """The rollout policy of one run. The evidence a canary needs per group: the given
    minimums, else the environment's (``MFG_ROLLOUT_MIN_PREDICTIONS``,
    ``MFG_ROLLOUT_MIN_LABELLED``: the closed-loop demo and test lower them, their live plant
    produces a few predictions per edge and minute), else the policy's 50/30. Read when a run
    starts, never at import (a default fixed at import needs a fresh interpreter to change).
    """
    evidence = get_settings().rollout
    return ro.RolloutPolicy(
        canary_fraction=canary_fraction,
        window=timedelta(minutes=window_minutes),
        min_predictions=min_predictions or evidence.min_predictions
        or ro.RolloutPolicy.min_predictions,
        min_labelled=min_labelled or evidence.min_labelled or ro.RolloutPolicy.min_labelled,
        max_accuracy_drop=max_accuracy_drop,
    )


def as_of(text: str) -> datetime:
    """The moment a rollout step evaluates: ``text`` (ISO, UTC when naive), empty: now."""
    if not text:
        return datetime.now(UTC)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def newest_bundles(lake: Lake) -> pl.DataFrame:
    """One row per (model, edge): its newest bundle in ``edge.bundles``."""
    frame = lake.read(BUNDLES)
    return frame.sort("created_at", "bundle_id").group_by("model", "edge_id",
                                                          maintain_order=True).last()


def evidence(lake: Lake, model: str, since: datetime, until: datetime) -> tuple[
    pl.DataFrame, pl.DataFrame | None, pl.DataFrame
]:
    """Predictions, labels and telemetry: labels by the kind of edge that serves ``model``
    (QA labels of a camera edge's images, fault labels of a line edge's windows)."""
    in_window = (pl.col("ts") >= since) & (pl.col("ts") <= until)
    predictions = lake.scan(table(SILVER_EDGE_PREDICTIONS)).filter(in_window).select(
        "edge_id", "bundle_id", "source_id", "value", "latency_ms", "ts").collect()
    telemetry = lake.scan(table(SILVER_EDGE_TELEMETRY)).filter(in_window).select(
        "edge_id", "ts", "log_errors").collect()
    entry = FAMILIES.get(model)
    labels: pl.DataFrame | None = None
    if entry is not None and entry.edge_kind == "camera":
        labels = lake.scan(table(SILVER_INSPECTION_IMAGES)).filter(
            pl.col("label").is_not_null()).select(
            pl.col("image_id").alias("source_id"), "label").collect()
    elif entry is not None and entry.edge_kind == "line":
        windows = lake.scan(table(entry.feature_table)).filter(pl.col("is_fault").is_not_null())
        labels = windows.select(
            pl.concat_str("machine_id", pl.lit("/"),
                          pl.col("window_start").dt.epoch("ms").cast(pl.String)).alias(
                "source_id"),
            pl.col("is_fault").cast(pl.String).alias("label"),
        ).collect()
    return predictions, labels, telemetry


def run_rollouts(
    lake: Lake, store: BundleStore, settings: DeploySettings, now: datetime | None = None
) -> list[RolloutStep]:
    """Per model: advance the running rollout, or start one for bundles that changed."""
    now = now or datetime.now(UTC)
    newest = newest_bundles(lake)
    active = ro.active_rollouts(lake)
    models = sorted(set(newest.get_column("model").to_list()) | {r.model for r in active})
    steps = []
    for model in models:
        running = [r for r in active if r.model == model]
        if running:
            steps += [_advance(lake, store, r, settings, now) for r in running]
            continue  # one rollout per model at a time: newer bundles wait for it to end
        steps.append(_start(lake, store, model, newest.filter(pl.col("model") == model),
                            settings, now))
    return steps


def _advance(lake: Lake, store: BundleStore, rollout: ro.Rollout, settings: DeploySettings,
             now: datetime) -> RolloutStep:
    approved = settings.approve and settings.rollout_id in ("", rollout.rollout_id)
    if approved:
        rollout = ro.approve(lake, store, rollout.rollout_id, settings.operator, now=now)
        if rollout.state in ro.TERMINAL:
            return RolloutStep(rollout.model, "approved", rollout.reason, rollout)
    since = max(rollout.started_at, now - settings.policy.window)
    predictions, labels, telemetry = evidence(lake, rollout.model, since, now)
    rollout = ro.advance(lake, store, rollout.rollout_id, predictions, labels, telemetry,
                         policy=settings.policy, now=now)
    return RolloutStep(rollout.model, "approved" if approved else "advanced", rollout.reason,
                       rollout)


def _start(lake: Lake, store: BundleStore, model: str, newest: pl.DataFrame,
           settings: DeploySettings, now: datetime) -> RolloutStep:
    candidates = dict(zip(newest.get_column("edge_id").to_list(),
                          newest.get_column("bundle_id").to_list(), strict=True))
    versions = dict(zip(newest.get_column("edge_id").to_list(),
                        newest.get_column("model_version").to_list(), strict=True))
    current = {edge: store.assignment(edge) for edge in candidates}
    step = RolloutStep(model, "unchanged", "every edge runs its newest bundle")
    # An edge running nothing yet has nothing to compare against: it gets its bundle directly.
    for edge, assignment in sorted(current.items()):
        if assignment is None:
            store.assign(edge, candidates[edge], by="rollout",
                         reason="first bundle of this edge: no previous one to compare against")
            step.assigned[edge] = candidates[edge]
    fleet = {e: b for e, b in candidates.items() if current[e] is not None}
    changed = sorted(e for e, b in fleet.items() if current[e].bundle_id != b)
    if step.assigned:
        step.action, step.detail = "first_deployment", (
            f"first bundles assigned directly to {', '.join(sorted(step.assigned))}")
    if not changed:
        return step
    done = _rollout_of(lake, model, fleet)
    if done is not None:
        step.action, step.rollout = "unchanged", done
        step.detail = (f"these bundles were already rolled out in {done.rollout_id} "
                       f"({done.state}); build new bundles to try again")
        return step
    if len(fleet) < 2:
        step.action = "waiting"
        step.detail = (f"{changed[0]} is the only {model} edge: no control group to compare "
                       "a canary against; assign its new bundle with `mfg edge assign`")
        return step
    canary = ro.choose_canary(sorted(fleet), settings.policy.canary_fraction,
                              eligible=changed, explicit=settings.canary_edges)
    version = ",".join(sorted({versions[e] for e in canary}))
    rollout = ro.start_rollout(
        lake, store, model=model, version=version, candidate_bundles=fleet,
        canary_edges=canary, require_approval=settings.require_approval,
        policy=settings.policy, now=now,
    )
    return RolloutStep(model, "started", rollout.reason, rollout, step.assigned)


def _rollout_of(lake: Lake, model: str, candidates: dict[str, str]) -> ro.Rollout | None:
    """The finished rollout of exactly these bundles, if any (a rolled-back candidate is
    not retried by itself)."""
    wanted = json.dumps(candidates, sort_keys=True)
    rows = lake.read(ro.ROLLOUTS).filter(
        (pl.col("model") == model) & (pl.col("candidate_bundles") == wanted))
    rows = rows.sort("updated_at")
    return ro.Rollout.from_row(rows.row(-1, named=True)) if rows.height else None


def rollout_summary(steps: list[RolloutStep]) -> dict[str, Any]:
    """What each model's rollout did, as plain data: per model its action, stage, reason,
    decision and both groups' figures (dicts: JSON documents), and ``rollouts``, a
    markdown table of all of them."""
    lines = ["| model | action | rollout | stage | decision | canary | control | reason |",
             "|---|---|---|---|---|---|---|---|"]
    facts: dict[str, Any] = {}
    for step in steps:
        r = step.rollout
        stage = r.state if r else "none"
        lines.append(
            f"| {step.model} | {step.action} | {r.rollout_id if r else ''} | {stage} | "
            f"{(r.decision or '') if r else ''} | {', '.join(r.canary_edges) if r else ''} | "
            f"{', '.join(r.control_edges) if r else ''} | {step.detail.replace('|', '/')} |"
        )
        facts[f"{step.model}/action"] = step.action
        facts[f"{step.model}/stage"] = stage
        facts[f"{step.model}/reason"] = step.detail
        if step.assigned:
            facts[f"{step.model}/assigned"] = dict(step.assigned)
        if r is not None:
            facts[f"{step.model}/rollout_id"] = r.rollout_id
            facts[f"{step.model}/decision"] = r.decision or "none"
            for group in ("canary", "control"):
                if group in r.metrics:
                    facts[f"{step.model}/{group}"] = dict(r.metrics[group])
    facts["rollouts"] = "\n".join(lines) if steps else "no edge bundles yet"
    return facts
