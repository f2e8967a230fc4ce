"""The scripted materialization plan: the plant's past, built in named steps.

`mfg demo` and the closed loop's seed (`mfg_assets.loop.seed`) both build a lakehouse from
replay files the same way, one run per step (per partition where the step is partitioned):

    bronze   replay files -> bronze tables, and the unpartitioned silver ground truth
    silver   one run per event day
    train    features -> challengers -> champions (behind their blocking gates)
    bundles  one run per edge device
    deploy   rollouts, and the monitoring reports that read them

`mfg demo` goes on past the seed with three more: ``features`` (rebuilt on live data: the
labels a canary is judged on), ``rollout`` (start or decide a canary) and ``monitor``
(drift, inspection statistics, cost, dashboard).

Each step is an asset selection resolved against the code location's asset graph
(:mod:`mfg_assets.definitions`), never a hand-kept list of assets, so a new asset in a group
joins its step. Each step runs as a named job, ``demo_<step>`` (:func:`plan_jobs`, also in
the code location), so the runs page tells the steps apart; the step's name is the run's
``mfg/plan_step`` tag too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import dagster as dg

from mfg_assets.defs.edge import BUNDLES_KEY, ROLLOUTS_KEY, edge_devices, edge_resources
from mfg_assets.defs.models import TrainConfig, champion_key, model_key, model_resources
from mfg_assets.defs.resources import default_resources
from mfg_assets.lake.names import MONITORING_LAKE_MAINTENANCE, SILVER_FAULT_LABELS
from mfg_assets.lake.registry import table
from mfg_assets.ml.families import FAMILIES

if TYPE_CHECKING:
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# Training: a refused challenger fails its run by design (the gate is a blocking check);
# callers print the gate's verdict (gate_verdicts) instead of Dagster's stack trace.
SILENT = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
STEP_TAG = "mfg/plan_step"
FAULT_LABELS = dg.AssetKey(table(SILVER_FAULT_LABELS).asset_key_path)
LAKE_MAINTENANCE = dg.AssetKey(table(MONITORING_LAKE_MAINTENANCE).asset_key_path)
# Outside the plan: lake maintenance runs on its own schedule, and re-scored history
# (group "predictions") is backfilled by day range from the UI, not part of a first run.
OUTSIDE_PLAN = dg.AssetSelection.assets(LAKE_MAINTENANCE) | dg.AssetSelection.groups(
    "predictions")


JOB_PREFIX = "demo_"


@dataclass(frozen=True)
class Step:
    name: str
    selection: dg.AssetSelection
    partitioned: bool = False  # one run per partition key the caller gives
    description: str = ""

    @property
    def job_name(self) -> str:
        return f"{JOB_PREFIX}{self.name}"


BRONZE = Step("bronze", dg.AssetSelection.groups("bronze") | dg.AssetSelection.assets(
    FAULT_LABELS), description="replay files -> bronze; silver ground truth (unpartitioned)")
SILVER = Step("silver", dg.AssetSelection.groups("silver") - dg.AssetSelection.assets(
    FAULT_LABELS), partitioned=True, description="typed, deduplicated, checked: per day")
TRAIN = Step("train", dg.AssetSelection.groups("features", "models"),
             description="features -> challengers -> champions behind their gates")
BUNDLES = Step("bundles", dg.AssetSelection.assets(BUNDLES_KEY), partitioned=True,
               description="signed per-edge bundles: per edge")
DEPLOY = Step("deploy", dg.AssetSelection.assets(ROLLOUTS_KEY)
              | dg.AssetSelection.groups("monitoring") - dg.AssetSelection.assets(
                  LAKE_MAINTENANCE),
              description="rollouts, inspection statistics, drift, cost, dashboard")
PLAN: tuple[Step, ...] = (BRONZE, SILVER, TRAIN, BUNDLES, DEPLOY)
FEATURES = Step("features", dg.AssetSelection.groups("features"),
                description="feature tables rebuilt on new silver data (a canary's labels)")
ROLLOUT = Step("rollout", dg.AssetSelection.assets(ROLLOUTS_KEY),
               description="start a canary of new bundles, or decide it from its evidence")
MONITOR = Step("monitor", dg.AssetSelection.groups("monitoring") - dg.AssetSelection.assets(
    LAKE_MAINTENANCE), description="drift, inspection statistics, cost, dashboard")
STEPS: tuple[Step, ...] = (*PLAN, FEATURES, ROLLOUT, MONITOR)


def plan_jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    """One named job per step, for the code location: the UI lists them, and runs of the
    plan (which build their own, with the same names) read as ``demo_bronze``, ..."""
    return [dg.define_asset_job(s.job_name, selection=s.selection, description=s.description,
                                tags={STEP_TAG: s.name}) for s in STEPS]


@cache
def asset_graph() -> AssetGraph:
    """The code location's asset graph (imported late: it imports every defs module)."""
    from mfg_assets.definitions import defs

    return defs.resolve_asset_graph()


def assets_for(keys: set[dg.AssetKey]) -> list[dg.AssetsDefinition]:
    """The code location's own definitions of ``keys`` (and of their checks), without the
    resources the Definitions bound when it was imported: a step runs with its own."""
    from mfg_assets.definitions import ALL_ASSETS

    return [a for a in ALL_ASSETS
            if set(a.keys) & keys or {c.asset_key for c in a.check_keys} & keys]


def step_keys(step: Step) -> set[dg.AssetKey]:
    return set(step.selection.resolve(asset_graph()))


def train_selection(families: Iterable[str] | None = None) -> dg.AssetSelection:
    """The train step, for some model families only (their features are all rebuilt)."""
    if families is None:
        return TRAIN.selection
    keys = [k for f in families for k in (model_key(f), champion_key(f))]
    return dg.AssetSelection.groups("features") | dg.AssetSelection.assets(*keys)


def train_config(budget: int, families: Iterable[str] = tuple(FAMILIES)) -> dg.RunConfig:
    """Silent logs (print ``gate_verdicts`` of the results), ``budget`` trials per family."""
    ops = {model_key(f).to_python_identifier(): TrainConfig(budget=budget) for f in families}
    return dg.RunConfig(ops=ops, **SILENT)


def gate_verdicts(results: Iterable[dg.ExecuteInProcessResult]) -> dict[str, str]:
    """Family -> "<verdict>: <reason>" of each promotion gate that ran."""
    from mfg_assets.defs.models import GATE

    out = {}
    for result in results:
        for check in result.get_asset_check_evaluations():
            if check.check_name != GATE:
                continue
            meta = check.metadata
            verdict = meta["verdict"].value if "verdict" in meta else (
                "passed" if check.passed else "refused")
            reason = meta["reason"].value if "reason" in meta else (check.description or "")
            out[check.asset_key.path[-1]] = f"{verdict}: {reason}"
    return out


def resources() -> dict[str, dg.ConfigurableResource]:
    """Built at call time: the loop points MFG_DATA_DIR elsewhere before it seeds."""
    return {**default_resources(), **model_resources(), **edge_resources()}


@dataclass
class Runner:
    """Runs plan steps on one instance with one set of resources."""

    instance: dg.DagsterInstance
    resources: dict[str, dg.ConfigurableResource]

    def run(self, step: Step, partitions: Sequence[str] = (), *,
            selection: dg.AssetSelection | None = None,
            run_config: dg.RunConfig | dict | None = None,
            raise_on_error: bool = True,
            on_event: Callable[[dg.EventLogEntry], None] | None = None,
            ) -> list[dg.ExecuteInProcessResult]:
        """One run of ``step`` (one per partition key when it is partitioned).

        ``on_event``: called with each event of the runs as it happens (`mfg train`'s bar).
        """
        keys = set((selection or step.selection).resolve(asset_graph()))
        # The step's named job over this step's own definitions, bound to this runner's
        # resources (not those the code location bound at import).
        job = dg.Definitions(
            assets=assets_for(keys), resources=self.resources,
            jobs=[dg.define_asset_job(step.job_name, selection=dg.AssetSelection.assets(
                *keys), description=step.description)],
        ).resolve_job_def(step.job_name)
        results = []
        for partition in (partitions if step.partitioned else [None]):
            run_id = None
            if on_event is not None:  # the instance calls it for each event of this run
                run_id = str(uuid.uuid4())
                self.instance.add_event_listener(run_id, on_event)
            results.append(job.execute_in_process(
                run_config=QUIET if run_config is None else run_config,
                instance=self.instance, partition_key=partition, run_id=run_id,
                tags={STEP_TAG: step.name}, raise_on_error=raise_on_error))
        return results

    def add_edges(self, edges: Sequence[str]) -> None:
        """Edges are dynamic partitions of the bundles: registered before their step."""
        self.instance.add_dynamic_partitions(edge_devices.name, list(edges))
