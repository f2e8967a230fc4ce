"""The scripted materialization plan: the plant's past, built in named steps.

`mfg demo` and the closed loop's seed (`mfg_assets.loop.seed`) both build a lakehouse from
replay files the same way, one run per step (per partition where the step is partitioned):

    bronze   replay files -> bronze tables, and the unpartitioned silver ground truth
    silver   one run per event day
    train    features -> challengers -> champions (behind their blocking gates)
    bundles  one run per edge device
    deploy   rollouts, and the monitoring reports that read them

Each step is an asset selection resolved against the code location's asset graph
(:mod:`mfg_assets.definitions`), never a hand-kept list of assets, so a new asset in a group
joins its step. The step's name becomes the run's ``mfg/plan_step`` tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import dagster as dg

from mfg_assets.defs.edge import BUNDLES_KEY, ROLLOUTS_KEY, edge_devices, edge_resources
from mfg_assets.defs.models import TrainConfig, champion_key, model_key, model_resources
from mfg_assets.defs.resources import default_resources
from mfg_assets.ml.families import FAMILIES

if TYPE_CHECKING:
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
STEP_TAG = "mfg/plan_step"
FAULT_LABELS = dg.AssetKey(["silver", "fault_labels"])
LAKE_MAINTENANCE = dg.AssetKey(["monitoring", "lake_maintenance"])


@dataclass(frozen=True)
class Step:
    name: str
    selection: dg.AssetSelection
    partitioned: bool = False  # one run per partition key the caller gives
    description: str = ""


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
    """Quiet logs, ``budget`` hyper-parameter trials per family."""
    ops = {model_key(f).to_python_identifier(): TrainConfig(budget=budget) for f in families}
    return dg.RunConfig(ops=ops, **QUIET)


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
            raise_on_error: bool = True) -> list[dg.ExecuteInProcessResult]:
        """One run of ``step`` (one per partition key when it is partitioned)."""
        keys = set((selection or step.selection).resolve(asset_graph()))
        assets = assets_for(keys)
        # A subset only where a definition holds more assets than the step selects (checks
        # of the selected assets run either way).
        subset = None if all(set(a.keys) <= keys for a in assets) else sorted(keys)
        results = []
        for partition in (partitions if step.partitioned else [None]):
            results.append(dg.materialize(
                assets, selection=subset, partition_key=partition,
                instance=self.instance, resources=self.resources,
                run_config=QUIET if run_config is None else run_config,
                tags={STEP_TAG: step.name}, raise_on_error=raise_on_error))
        return results

    def add_edges(self, edges: Sequence[str]) -> None:
        """Edges are dynamic partitions of the bundles: registered before their step."""
        self.instance.add_dynamic_partitions(edge_devices.name, list(edges))
