"""Before the onset: history into the lakehouse, a champion, bundles and a first rollout.

This part is scripted (the named steps of :mod:`mfg_assets.plan`, like `mfg demo`): it is
the plant's past. Nothing after the onset is launched from here.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import dagster as dg
import orjson

from mfg_assets import plan
from mfg_assets.defs.models import champion_key
from mfg_assets.edge.store import PLACE, BundleStore, Device, default_store_uri
from mfg_assets.loop.scenario import EDGES, FAMILY, LoopConfig, layout
from mfg_assets.sim import SimConfig, ground_truth, write_replay

# Both families on features/sensor_windows: the drift sensor retrains whichever drifted,
# and a family without a champion would compare against its oldest window instead.
SEED_FAMILIES = ("sensor_anomaly", "failure_forecast")


def register_edges(store: BundleStore) -> list[str]:
    """The loop's line edges, each scoring every welder of the welding line."""
    plant = layout()
    for edge in EDGES:
        place = dict(zip(PLACE, (plant.enterprise, plant.site, edge.area, edge.line, edge.cell),
                         strict=True))
        sources = (f"{plant.enterprise}/{plant.site}/{edge.area}/{edge.line}/+/+/sensors",)
        store.register(Device(edge.edge_id, edge.kind, place, sources,
                              firmware=f"mfg-edge/{edge.firmware}"))
    return [edge.edge_id for edge in EDGES]


def write_history(history: SimConfig, live: SimConfig, replay_dir: Path) -> int:
    """History as replay files; the live day's ground truth too (faults and the drift
    record are known up front; the live UNS traffic itself goes through the gateway)."""
    summary = write_replay(history, replay_dir / "loop-history")
    truth = replay_dir / "loop-live"
    truth.mkdir(parents=True, exist_ok=True)
    (truth / "ground_truth.jsonl").write_bytes(
        b"".join(orjson.dumps(r) + b"\n" for r in ground_truth(live)))
    return summary.messages


def seed(instance: dg.DagsterInstance, config: LoopConfig, history: SimConfig,
         live: SimConfig, replay_dir: Path, log=print) -> dict[str, str]:
    """Build the past; returns what the champion and bundles are at the onset."""
    started = time.perf_counter()
    messages = write_history(history, live, replay_dir)
    store = BundleStore(default_store_uri())
    edges = register_edges(store)
    runner = plan.Runner(instance, plan.resources())
    runner.run(plan.BRONZE)
    days = _days(history.start, live.start)
    runner.run(plan.SILVER, days)  # the history's days and the (still empty) live day
    log(f"seed: {messages} history messages -> bronze, silver {', '.join(days)} "
        f"({time.perf_counter() - started:.0f}s)")
    results = runner.run(plan.TRAIN, selection=plan.train_selection(SEED_FAMILIES),
                         run_config=plan.train_config(config.retrain_budget, SEED_FAMILIES),
                         raise_on_error=False)
    for family, verdict in sorted(plan.gate_verdicts(results).items()):
        log(f"seed: {family} gate {verdict}")
    if instance.get_latest_materialization_event(champion_key(FAMILY)) is None:
        raise RuntimeError(f"seed: the {FAMILY} challenger did not pass its gate on the "
                           "history; try another --seed or a longer history")
    runner.add_edges(edges)
    runner.run(plan.BUNDLES, edges)
    runner.run(plan.DEPLOY, raise_on_error=False)
    assigned = {edge: a.bundle_id for edge in edges if (a := store.assignment(edge))}
    if len(assigned) != len(edges):
        raise RuntimeError(f"seed: not every edge got a first bundle: {assigned}")
    log(f"seed: champion, bundles and first deployment to {', '.join(edges)} "
        f"({time.perf_counter() - started:.0f}s)")
    return assigned


def _days(start: datetime, live_day: datetime) -> list[str]:
    days, day = [], start.date()
    while day <= live_day.date():
        days.append(day.isoformat())
        day = day.fromordinal(day.toordinal() + 1)
    return days
