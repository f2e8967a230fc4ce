"""The whole loop: seed, start the services, switch the drift on, watch, report."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from mfg_assets.loop.scenario import (
    EDGES,
    FAMILY,
    LoopConfig,
    history_config,
    live_config,
    live_day,
)
from mfg_assets.settings import PACKAGE_DIR, get_settings

SETUP_BUDGET_S = 300.0  # seed and settle: the part of a loop before its onset


@dataclass
class LoopResult:
    root: Path
    timeline: object  # watch.Timeline
    quality: dict[str, dict[str, float]] = field(default_factory=dict)
    rollout_metrics: dict = field(default_factory=dict)
    scenario: str | None = None  # None: the control run
    target: str | None = None  # the drifted machine (None in the control run)
    declarations: object = None  # watch.Declarations after the onset
    live_evaluations: dict[str, int] = field(default_factory=dict)  # judged live data

    @property
    def recovered(self) -> bool:
        return self.timeline.outcome == "promoted"

    @property
    def drift_retrains(self) -> list:
        """Runs after the onset launched for drift (tagged mfg/trigger=drift)."""
        return [r for r in self.timeline.runs if r.trigger == "drift"]

    @property
    def untouched_declared(self) -> tuple[str, ...]:
        """Machines declared drifted that the scenario did not touch (any, in a control)."""
        return self.declarations.untouched(self.target) if self.declarations else ()

    def figures(self) -> dict[str, float]:
        """Flat figures for the benchmark report (seconds after the onset, quality)."""
        t = self.timeline
        out = {f"stage_s/{s}": v for s in t.stages if (v := t.seconds(s)) is not None}
        if t.time_to_recover_s is not None:
            out["time_to_recover_s"] = t.time_to_recover_s
        for when, metrics in self.quality.items():
            out |= {f"quality_{when}/{k}": v for k, v in metrics.items()}
        for group, metrics in self.rollout_metrics.items():
            out |= {f"rollout_{group}/{k}": v for k, v in metrics.items()
                    if isinstance(v, int | float)}
        out["runs_after_onset"] = float(len(t.runs))
        out["runs_by_script"] = float(sum(r.launched_by == "script" for r in t.runs))
        out["drift_retrains"] = float(len(self.drift_retrains))
        out["untouched_declared"] = float(len(self.untouched_declared))
        d = self.declarations
        if d is not None:
            for family in sorted(d.evaluations):
                out[f"drift_evaluations/{family}"] = float(d.evaluations[family])
                out[f"drift_declarations/{family}"] = float(d.declared[family])
                out[f"declared_segments/{family}"] = float(len(d.segments[family]))
        for family, n in sorted(self.live_evaluations.items()):
            out[f"drift_live_evaluations/{family}"] = float(n)
        return out


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """The loop's data dir and cadences for this process (the seed, the watcher)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _instance_config(home: Path, interval_s: int) -> None:
    """The project's instance config, with a run queue and automation that tick as often
    as the loop's sensors."""
    doc = yaml.safe_load((PACKAGE_DIR.parent / "dagster.yaml").read_text()) or {}
    doc.setdefault("run_coordinator", {}).setdefault("config", {})[
        "dequeue_interval_seconds"] = 1
    doc.setdefault("auto_materialize", {})["minimum_interval_seconds"] = interval_s
    # Live traffic keeps small runs coming (telemetry, predictions: seconds of work after a
    # process start each); with two slots the loop's own runs queue behind them.
    doc.setdefault("concurrency", {}).setdefault("runs", {})["max_concurrent_runs"] = 3
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def wait_for_midnight(budget_s: float, log: Callable[[str], None]) -> None:
    """Silver follows today's partition: a loop must not cross midnight UTC."""
    now = datetime.now(UTC)
    midnight = live_day(now) + timedelta(days=1)
    if (midnight - now).total_seconds() < budget_s:
        log(f"waiting for midnight UTC ({(midnight - now).total_seconds():.0f}s): the live "
            "day must not change during the loop")
        time.sleep((midnight - now).total_seconds() + 5)


def wait_until_settled(instance, daemon, timeout_s: float, log: Callable[[str], None]) -> None:
    """Until the daemon has reacted to the seeded lakehouse: its first sensor ticks launch a
    round of runs (silver of the live day, features, drift); the onset waits until that
    round is done and the queue is empty, so it does not delay the loop's own runs. Live
    edge heartbeats keep some runs coming: after ``timeout_s`` the loop goes on anyway."""
    import dagster as dg

    from mfg_assets.defs.automation import IN_FLIGHT

    started = datetime.now(UTC)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        daemon.check()
        done = instance.get_runs_count(dg.RunsFilter(
            created_after=started, statuses=[dg.DagsterRunStatus.SUCCESS,
                                             dg.DagsterRunStatus.FAILURE]))
        if done and not instance.get_runs_count(dg.RunsFilter(statuses=list(IN_FLIGHT))):
            log(f"daemon settled: {done} run(s) on the seeded lakehouse "
                f"({(datetime.now(UTC) - started).total_seconds():.0f}s)")
            return
        time.sleep(1)
    log(f"daemon still busy after {timeout_s:.0f}s: switching the drift on anyway")


def _remove(root: Path, tries: int = 10) -> None:
    """rmtree, retried: a process of the previous loop may still be closing its files."""
    for attempt in range(tries):
        if not root.exists():
            return
        try:
            shutil.rmtree(root)
        except OSError:
            if attempt == tries - 1:
                raise
            time.sleep(1.0)


def run_loop(config: LoopConfig, root: Path | None = None,
             log: Callable[[str], None] = print) -> LoopResult:
    root = (root or get_settings().data_dir / "loop").resolve()
    _remove(root)  # a fresh lakehouse, instance and registry per loop
    root.mkdir(parents=True)
    env = {"MFG_DATA_DIR": str(root), "DAGSTER_HOME": str(root / "dagster"),
           "MLFLOW_TRACKING_URI": "", "MFG_BUNDLE_STORE": "", **config.env()}
    # seed (~1-2 min) and the daemon's first round (<= 5 min, usually 30 s) before the onset
    wait_for_midnight(config.timeout_s + SETUP_BUDGET_S, log)
    _instance_config(root / "dagster", config.sensor_interval_s)
    with _environment(env), ExitStack() as stack:
        return _run(config, root, {**os.environ, **env}, stack, log)


def _run(config: LoopConfig, root: Path, env: dict[str, str], stack: ExitStack,
         log: Callable[[str], None]) -> LoopResult:
    import dagster as dg

    from mfg_assets.lake.delta import Lake
    from mfg_assets.loop import services
    from mfg_assets.loop.quality import before_after
    from mfg_assets.loop.seed import seed
    from mfg_assets.loop.watch import Watcher
    from mfg_assets.ml.registry import ModelRegistry, registered_name
    from mfg_assets.sim import publish
    from mfg_assets.sim.drift import replacement_target

    settings = get_settings()
    day = live_day()
    history, live = history_config(config, day), live_config(config, day)
    instance = stack.enter_context(dg.DagsterInstance.get())
    seed(instance, config, history, live, settings.replay_dir, log)
    registry = ModelRegistry(settings.mlflow_tracking_uri, settings.mlflow_artifact_root)
    before = str(registry.champion(registered_name(FAMILY)).version)

    logs = root / "logs"
    logs.mkdir()
    broker = config.broker_url or services.start_mosquitto(logs, stack)
    watcher_uns = services.UnsWatcher(broker)
    stack.callback(watcher_uns.close)
    procs = [services.start_gateway(broker, logs, env, stack)]
    procs += [services.start_edge(e.edge_id, broker, logs, env, stack) for e in EDGES]
    daemon = services.start_daemon(logs, env, stack)
    watcher_uns.wait_for(["gateway:mfg-loop-gateway", *(f"edge:{e.edge_id}" for e in EDGES)],
                         procs, timeout_s=120)
    log(f"services up: broker {broker}, gateway, edges {', '.join(e.edge_id for e in EDGES)}, "
        "dagster-daemon")
    wait_until_settled(instance, daemon, 300, log)

    stop = threading.Event()
    published: dict = {}

    def play() -> None:
        try:
            published.update(publish(
                live, broker, speed=config.speed, client_id="mfg-loop-sim", stop=stop,
                fast_until_ms=live.start_ms + round(config.backlog_h * 3_600_000)))
        except Exception as exc:  # reported by the main thread
            published["error"] = repr(exc)

    onset = datetime.now(UTC)
    player = threading.Thread(target=play, name="mfg-loop-sim", daemon=True)
    player.start()
    stack.callback(lambda: (stop.set(), player.join(30)))
    target = replacement_target(live) if config.scenario else None
    if config.scenario:
        log(f"onset {onset:%H:%M:%S} UTC: {config.scenario} on {target}; from now on the "
            "script only watches")
    else:
        log(f"onset {onset:%H:%M:%S} UTC: control, the live day without drift; watching "
            f"for {config.control_watch_s:.0f}s")
    watch = Watcher(instance, Lake(), onset, FAMILY, before, live_start=live.start)
    seen: set[str] = set()
    started = time.monotonic()

    def finished() -> bool:
        """A scenario: once promoted (or rolled back). The control: after its watch time and
        once the family's drift was evaluated on live data often enough to declare (on a
        busy host the first live evaluation can take minutes)."""
        if config.scenario:
            return watch.done
        return (time.monotonic() - started >= config.control_watch_s
                and watch.live_evaluations.get(FAMILY, 0) >= config.control_evaluations)

    while time.monotonic() - started < config.timeout_s and not finished():
        for service in (*procs, daemon):
            service.check()
        if "error" in published:
            raise RuntimeError(f"the simulator stopped: {published['error']}")
        timeline = watch.poll()
        for stage in (s for s in timeline.stages if s not in seen):
            seen.add(stage)
            log(f"  t+{timeline.seconds(stage):6.1f}s  {stage}: {timeline.details.get(stage, '')}")
        for at, family, drifted, reason in watch.new_evaluations():
            log(f"  t+{(at - onset).total_seconds():6.1f}s  drift {family}: "
                f"{'DRIFTED ' if drifted else ''}{reason[:200]}")
        time.sleep(2)
    timeline = watch.poll()
    stop.set()
    result = LoopResult(root, timeline, scenario=config.scenario, target=target,
                        declarations=watch.declarations(),
                        live_evaluations=dict(watch.live_evaluations))
    if timeline.champion_after is not None:
        result.quality = before_after(Lake(), registry, before, timeline.champion_after,
                                      live.start, target)
    if timeline.rollout:
        result.rollout_metrics = json.loads(timeline.rollout.get("metrics") or "{}")
    return result


def report(result: LoopResult, log: Callable[[str], None] = print) -> None:
    t = result.timeline
    log("\nstage timeline (t+ = seconds after the drift onset):")
    log(t.table())
    by: dict[str, int] = {}
    for run in t.runs:
        by[run.launched_by] = by.get(run.launched_by, 0) + 1
    log(f"\nruns after the onset: {len(t.runs)}, launched by "
        f"{', '.join(f'{k}: {v}' for k, v in sorted(by.items()))}")
    d = result.declarations
    if d is not None:
        for family in sorted(d.evaluations):
            log(f"drift {family}: {d.evaluations[family]} evaluation(s) after the onset "
                f"({result.live_evaluations.get(family, 0)} of live data), "
                f"{d.declared[family]} drifted, declared segments "
                f"{', '.join(d.segments[family]) or 'none'}")
    log(f"drift retrains launched: {len(result.drift_retrains)}; declared machines the "
        f"{'scenario' if result.scenario else 'control'} did not touch: "
        f"{', '.join(result.untouched_declared) or 'none'}")
    for when in ("before", "after"):
        q = result.quality.get(when)
        if q:
            log(f"quality {when:<6} (v{t.champion_before if when == 'before' else t.champion_after}"
                f", post-drift hold-out windows): " + ", ".join(
                    f"{k} {v:.3f}" for k, v in sorted(q.items()) if k != "windows")
                + f" over {q.get('windows', 0):.0f} windows")
    for group in ("canary", "control"):
        m = result.rollout_metrics.get(group)
        if m:
            log(f"rollout {group:<7}: {m.get('predictions')} predictions, accuracy "
                f"{m.get('accuracy', float('nan')):.3f}, positive rate "
                f"{m.get('positive_rate', float('nan')):.3f}")
    if result.scenario is None:
        log("\ncontrol run: no drift, nothing to recover")
    elif t.time_to_recover_s is not None:
        log(f"\ntime to recover (onset -> promoted bundle): {t.time_to_recover_s:.1f}s")
    else:
        log(f"\nnot recovered: outcome {t.outcome or 'none within the timeout'}")
    log(f"logs: {result.root / 'logs'}; instance: {result.root / 'dagster'}")
