"""The loop's stage timeline, read from the Dagster instance and the lakehouse only.

Every stage is the first event of its kind after the onset: the first bronze commit, the
first silver materialization, the first drift verdict for the family, the first drift
retrain run, the champion alias moving, the first bundle of the new version, the rollout
that takes it to a canary, and that rollout's promotion (or rollback). And what the drift
report declared after the onset (``declarations``): which families, which segments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg
import polars as pl

from mfg_assets.defs.drift import DRIFT_TABLE, FAMILIES_TAG, TRIGGER_TAG
from mfg_assets.defs.models import champion_key
from mfg_assets.fleet.bundles import BUNDLES
from mfg_assets.fleet.rollout import ROLLOUTS_TABLE
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.names import BRONZE_SENSOR_READINGS, SILVER_SENSOR_READINGS
from mfg_assets.lake.registry import table
from mfg_assets.ml.drift_reference import Decision, persistent

STAGES = ("onset", "bronze_commit", "silver", "drift_detected", "retrain_launched",
          "new_champion", "bundle", "canary", "promoted")
SENSOR_TAG = "dagster/sensor_name"
AUTOMATION_TAGS = ("dagster/from_automation_condition", "dagster/auto_materialize")


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    created: datetime
    status: str
    launched_by: str  # the sensor that launched it, or "script" (no sensor tag)
    assets: str
    trigger: str  # mfg/trigger tag ("drift") or ""
    queued_s: float  # created -> started: the run queue and the run worker's start
    compute_s: float  # started -> ended


@dataclass
class Timeline:
    onset: datetime
    family: str
    champion_before: str
    stages: dict[str, datetime] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    champion_after: str | None = None
    outcome: str | None = None  # "promoted" | "rolled_back"
    rollout: dict | None = None
    runs: list[RunInfo] = field(default_factory=list)

    def seconds(self, stage: str) -> float | None:
        at = self.stages.get(stage)
        return None if at is None else (at - self.onset).total_seconds()

    @property
    def time_to_recover_s(self) -> float | None:
        return self.seconds("promoted")

    def in_order(self) -> bool:
        times = [self.stages[s] for s in STAGES if s in self.stages]
        return len(times) == len(STAGES) and times == sorted(times)

    def table(self) -> str:
        lines = [f"{'stage':<18}{'t+ (s)':>9}  at (UTC)                  detail"]
        for stage in STAGES:
            at = self.stages.get(stage)
            offset = f"{self.seconds(stage):9.1f}" if at else f"{'—':>9}"
            when = at.strftime("%H:%M:%S.%f")[:-3] if at else ""
            lines.append(f"{stage:<18}{offset}  {when:<24}  {self.details.get(stage, '')}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Declarations:
    """What ``monitoring.drift`` declared after the onset, per family."""

    evaluations: dict[str, int]  # drift evaluations after the onset
    declared: dict[str, int]  # ...of which said the family drifted
    segments: dict[str, tuple[str, ...]]  # segments (machines) declared, i.e. persisted
    first_declared: dict[str, datetime]  # first evaluation that said drifted

    def untouched(self, target: str | None) -> tuple[str, ...]:
        """Declared segments other than the drifted machine (all of them in a control)."""
        return tuple(sorted({s for segs in self.segments.values() for s in segs
                             if s != target}))


def declarations(rows: pl.DataFrame, onset: datetime,
                 persistence: int = Decision().persistence) -> Declarations:
    """Declarations in ``monitoring.drift`` rows from ``onset`` on. A segment is declared
    where its inputs drifted in ``persistence`` consecutive evaluations of the family (the
    report's own rule; the stored ``drifted`` is each evaluation's verdict), evaluations
    before the onset counting as history."""
    evaluations, declared, segments, first = {}, {}, {}, {}
    for (family,), part in rows.partition_by("family", as_dict=True).items():
        history: list[set[str]] = []
        found: set[str] = set()
        times = sorted(set(part["computed_at"].to_list()))
        after = [t for t in times if t >= onset]
        for at in times:
            now = part.filter(pl.col("computed_at") == at)
            drifted = set(now.filter(pl.col("kind") == "input", pl.col("drifted"))
                          ["segment"].to_list())
            if at >= onset:
                if "declared" in now.columns and now["declared"].is_not_null().any():
                    # what the report declared (open faults excluded), not a re-derivation
                    found |= set(now.filter(pl.col("kind") == "input", pl.col("declared"))
                                 ["segment"].to_list())
                else:
                    found |= persistent(history, drifted, persistence)
                if now["family_drifted"].any():
                    declared[family] = declared.get(family, 0) + 1
                    first.setdefault(family, at)
            history.append(drifted)
        evaluations[family] = len(after)
        declared.setdefault(family, 0)
        segments[family] = tuple(sorted(found))
    return Declarations(evaluations, declared, segments, first)


def launched_by(tags: dict[str, str]) -> str:
    if tags.get(SENSOR_TAG):
        return tags[SENSOR_TAG]
    if any(tags.get(t) for t in AUTOMATION_TAGS):
        return "automation"
    return "script"


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Watcher:
    """Polled: each :meth:`poll` fills in the stages that have happened since the last."""

    def __init__(self, instance: dg.DagsterInstance, lake: Lake, onset: datetime,
                 family: str, champion_before: str, live_start: datetime | None = None):
        self.instance, self.lake = instance, lake
        # the live day's first simulated instant: an evaluation whose recent window ends
        # after it has judged live data (the ones before only saw the seeded history)
        self.live_start = live_start or onset
        self.timeline = Timeline(onset, family, champion_before)
        self.timeline.stages["onset"] = onset
        self.timeline.details["onset"] = "the live day's messages start"
        self._evaluated: datetime | None = None  # the latest drift evaluation logged
        self.live_evaluations: dict[str, int] = {}  # family -> evaluations of live data

    @property
    def done(self) -> bool:
        return self.timeline.outcome is not None

    def poll(self) -> Timeline:
        t, onset = self.timeline, self.timeline.onset
        if "bronze_commit" not in t.stages:
            self._bronze()
        if "silver" not in t.stages:
            self._first_materialization(
                "silver", dg.AssetKey(table(SILVER_SENSOR_READINGS).asset_key_path))
        if "drift_detected" not in t.stages:
            self._drift()
        if "retrain_launched" not in t.stages:
            runs = self.instance.get_run_records(
                dg.RunsFilter(tags={TRIGGER_TAG: "drift", FAMILIES_TAG: t.family},
                              created_after=onset),
                order_by="create_timestamp", ascending=True, limit=1)
            if runs:
                t.stages["retrain_launched"] = runs[0].create_timestamp.astimezone(UTC)
                t.details["retrain_launched"] = (
                    f"run {runs[0].dagster_run.run_id[:8]} by "
                    f"{launched_by(runs[0].dagster_run.tags)}")
        if "new_champion" not in t.stages:
            self._champion()
        if t.champion_after is not None:
            self._bundle_and_rollout()
        t.runs = self._runs()
        return t

    def new_evaluations(self) -> list[tuple[datetime, str, bool, str]]:
        """(computed_at, family, drifted, reason) of the drift evaluations after the onset
        not returned before (the loop logs each verdict as it comes); counts those that
        judged live data in ``live_evaluations``."""
        spec = table(DRIFT_TABLE)
        if not self.lake.exists(spec):
            return []
        at = pl.col("computed_at")
        new = at >= self.timeline.onset if self._evaluated is None else at > self._evaluated
        rows = (self.lake.scan(spec).filter(new)
                .group_by("computed_at", "family")
                .agg(pl.col("family_drifted").first(), pl.col("reason").first(),
                     pl.col("recent_end").max())
                .sort("computed_at", "family").collect())
        if rows.height:
            self._evaluated = rows["computed_at"].max()
        live = rows.filter(pl.col("recent_end") >= self.live_start)
        for family in live["family"].to_list():
            self.live_evaluations[family] = self.live_evaluations.get(family, 0) + 1
        return [tuple(r) for r in rows.drop("recent_end").iter_rows()]

    def declarations(self) -> Declarations:
        spec = table(DRIFT_TABLE)
        if not self.lake.exists(spec):
            return Declarations({}, {}, {}, {})
        scan = self.lake.scan(spec)
        columns = ["family", "computed_at", "kind", "segment", "drifted", "family_drifted"]
        rows = scan.select(*columns, *(["declared"] if "declared" in
                                       scan.collect_schema().names() else [])).collect()
        return declarations(rows, self.timeline.onset)

    def _bronze(self) -> None:
        spec = table(BRONZE_SENSOR_READINGS)
        if not self.lake.exists(spec):
            return
        onset_ms = self.timeline.onset.timestamp() * 1000
        commits = [c for c in self.lake.table(spec).history(limit=200)
                   if c.get("timestamp", 0) >= onset_ms and c.get("operation") == "WRITE"]
        if commits:
            first = min(commits, key=lambda c: c["timestamp"])
            self.timeline.stages["bronze_commit"] = _ts(first["timestamp"] / 1000)
            self.timeline.details["bronze_commit"] = f"bronze.sensor_readings v{first['version']}"

    def _first_materialization(self, stage: str, key: dg.AssetKey):
        found = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_timestamp=self.timeline.onset.timestamp()),
            limit=1, ascending=True).records
        if not found:
            return None
        record = found[0]
        run = self.instance.get_run_by_id(record.run_id) if record.run_id else None
        self.timeline.stages[stage] = _ts(record.timestamp)
        who = launched_by(run.tags) if run else "runless"
        self.timeline.details[stage] = f"{key.to_user_string()} by {who}"
        return record

    def _drift(self) -> None:
        spec = table(DRIFT_TABLE)
        if not self.lake.exists(spec):
            return
        rows = (self.lake.scan(spec)
                .filter((pl.col("family") == self.timeline.family) & pl.col("family_drifted")
                        & (pl.col("computed_at") >= self.timeline.onset))
                .select("computed_at", "reason").sort("computed_at").head(1).collect())
        if rows.height:
            at, reason = rows.row(0)
            self.timeline.stages["drift_detected"] = at
            self.timeline.details["drift_detected"] = reason[:160]

    def _champion(self) -> None:
        record = self._first_materialization("new_champion", champion_key(self.timeline.family))
        if record is None:
            return
        meta = record.asset_materialization.metadata
        version = str(meta["model_version"].value) if "model_version" in meta else None
        self.timeline.champion_after = version
        gate = str(meta["gate"].value) if "gate" in meta else ""
        self.timeline.details["new_champion"] += (
            f": v{self.timeline.champion_before} -> v{version} ({gate[:240]})")

    def _bundle_and_rollout(self) -> None:
        t, version = self.timeline, self.timeline.champion_after
        if "bundle" not in t.stages:
            rows = (self.lake.scan(BUNDLES)
                    .filter((pl.col("model") == t.family) & (pl.col("model_version") == version))
                    .sort("created_at").collect())
            if rows.height:
                t.stages["bundle"] = rows.item(0, "created_at")
                t.details["bundle"] = (f"{rows.height} bundle(s) of v{version}: "
                                       f"{', '.join(rows.get_column('edge_id').to_list())}")
        spec = table(ROLLOUTS_TABLE)
        if not self.lake.exists(spec):
            return
        rows = (self.lake.scan(spec)
                .filter((pl.col("model") == t.family)
                        & pl.col("candidate_version").str.split(",").list.contains(version))
                .sort("started_at").collect())
        if not rows.height:
            return
        row = rows.row(0, named=True)
        t.rollout = row
        t.stages.setdefault("canary", row["started_at"])
        t.details["canary"] = (f"rollout {row['rollout_id'][:8]}: canary "
                               f"{row['canary_edges']}, control {row['control_edges']}")
        if row["state"] in ("promoted", "rolled_back"):
            t.outcome = row["state"]
            stage = "promoted" if row["state"] == "promoted" else "rolled_back"
            t.stages[stage] = row["updated_at"]
            t.details[stage] = (row["reason"] or "")[:200]

    def _runs(self) -> list[RunInfo]:
        records = self.instance.get_run_records(
            dg.RunsFilter(created_after=self.timeline.onset), order_by="create_timestamp",
            ascending=True)
        out = []
        for r in records:
            run = r.dagster_run
            assets = sorted(k.to_user_string() for k in (run.asset_selection or ()))
            created = r.create_timestamp.timestamp()
            started = r.start_time or created
            ended = r.end_time or started
            out.append(RunInfo(run.run_id, r.create_timestamp.astimezone(UTC),
                               run.status.value, launched_by(run.tags),
                               ", ".join(assets)[:120], run.tags.get(TRIGGER_TAG, ""),
                               started - created, ended - started))
        return out
