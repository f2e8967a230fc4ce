"""`mfg demo`: the whole lifecycle of the platform on a simulated plant, step by step.

    history     48 h of plant traffic as replay files, and a misbehaving device
    bronze      replay -> bronze (bad messages -> quarantine with the reason)
    silver      typed, deduplicated, checked: one run per day
    train       features -> challengers -> champions behind their gates
    bundles     one signed ONNX bundle per edge, first deployment
    live        a private broker, the gateway and the line edges in this process: the next
                hours of the plant stream through them, predictions flow back into bronze
    retrain     a second model version on the newer data (the gate decides)
    canary      its bundles on a canary edge, more live traffic, the rollout decided from
                the evidence (promoted or rolled back, with the reason)
    monitor     drift on the newer day, inspection statistics, cost, dashboard

Each Dagster step is a named job (``demo_<step>``, :mod:`mfg_assets.plan`) on the persistent
instance under ``data/dagster``, so ``make dev`` shows the runs afterwards. Each step's time
is printed, then the total.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import orjson
import polars as pl

from mfg_assets import plan
from mfg_assets.defs.models import champion_key, model_key
from mfg_assets.fleet.bundles import discover_edges
from mfg_assets.gateway.config import GatewayConfig
from mfg_assets.gateway.service import Gateway
from mfg_assets.lake.catalog import connect
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.names import EDGE_BUNDLES
from mfg_assets.lake.registry import table
from mfg_assets.ml.families import FAMILIES
from mfg_assets.monitoring.dashboard import report_path
from mfg_assets.settings import PACKAGE_DIR, Settings, get_settings
from mfg_assets.sim import SimConfig, ground_truth, publish, write_replay
from mfg_assets.uns.contract import load_contract

DEMO_HOURS = 48.0  # two daily partitions, with faults developing on the machines
DEMO_BUDGET = 1  # one hyper-parameter trial per family keeps the demo to minutes
# The families `make demo` trains, and why the others wait for `mfg train FAMILY`.
DEMO_FAMILIES = ("sensor_anomaly", "process_yield")
SKIPPED_WHY = {
    "failure_forecast": "Prophet fits one series per machine and signal: minutes on 2 cores",
    "vision_defect": "a CNN on the inspection images: minutes on 2 cores",
    "part_detection": "needs assembly images with boxes (`mfg import images --boxes`)",
    "edge_health": "needs days of a fleet with device faults; the demo's edges are healthy",
}
LIVE_FAMILY = "sensor_anomaly"  # what the line edges serve (ml/families.py: edge kind line)
LIVE_EDGES = ("edge-press1", "edge-weld1")  # one canary, one control
LIVE_SOURCES = ("welding", "press", "process")  # the line edges read the first two
LIVE_HOURS = (2.0, 3.0)  # simulated hours before the canary, and with it
# A canary's evidence per group before its decision (production: 50 and 30): a few hours of
# a line give ~18 windows per edge and hour.
CANARY_MIN_PREDICTIONS = 20
CANARY_MIN_LABELLED = 10
BAD_DEVICE = "weld-09"  # the misbehaving device: a welder with broken firmware


def demo_start(hours: float, now: datetime | None = None) -> datetime:
    """The history starts so that its live hours end at about now: the edges stamp their
    predictions and heartbeats with the wall clock, and the plant's event time then reads
    as one timeline (on the dashboard too)."""
    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    return now - timedelta(hours=hours + sum(LIVE_HOURS))


def ensure_dagster_home(settings: Settings) -> Path:
    """Point DAGSTER_HOME at data/dagster with the project's instance config."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    project_config = PACKAGE_DIR.parent / "dagster.yaml"
    if project_config.exists() and not (home / "dagster.yaml").exists():
        shutil.copy(project_config, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def event_days(lake: Lake) -> list[str]:
    """Days that have bronze data: the silver partitions worth materializing."""
    days: set[str] = set()
    for name in (
        "sensor_readings",
        "process_runs",
        "inspection_images",
        "edge_telemetry",
        "edge_predictions",
    ):
        spec = table(f"bronze.{name}")
        if lake.exists(spec):
            for partition in lake.table(spec).partitions():
                days.add(partition["event_date"])
    return sorted(days)


# -- timing -------------------------------------------------------------------------------


@dataclass
class Timings:
    """Each step's wall time, printed as it ends and as a table at the end."""

    steps: list[tuple[str, float]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @contextmanager
    def step(self, name: str, what: str = "") -> Iterator[None]:
        print(f"\n== {name}{': ' + what if what else ''}", flush=True)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - t0
            self.steps.append((name, elapsed))
            print(f"   [{name}: {elapsed:.1f}s]", flush=True)

    @property
    def total(self) -> float:
        return time.perf_counter() - self.started

    def table(self) -> str:
        width = max((len(n) for n, _ in self.steps), default=4)
        lines = [f"  {n:<{width}}  {s:7.1f}s" for n, s in self.steps]
        return "\n".join([*lines, f"  {'total':<{width}}  {self.total:7.1f}s"])


# -- the misbehaving device ----------------------------------------------------------------


def misbehaving_messages(config: SimConfig, every_s: float = 900.0) -> list[dict[str, Any]]:
    """Replay lines of a welder with broken firmware: every message breaks the contract in
    one of five ways (invalid JSON, a text value, a missing field, an ISO timestamp, a
    misspelt topic), so each lands in ``bronze.quarantine`` with its reason."""
    plant = config.plant
    base = (f"{plant.enterprise}/{plant.site}/{plant.weld_area}/{plant.weld_line}/cell09/"
            f"{BAD_DEVICE}")
    lines = []
    steps = int(config.duration_h * 3600 // every_s)
    for i in range(steps):
        ts = config.start_ms + int(i * every_s * 1000)
        good = {"timestamp": ts, "machineType": "welder", "seq": i,
                "readings": [{"sensor": "current", "value": 150.0 + i % 7, "unit": "A"}]}
        kind = i % 5
        topic = f"{base}/sensors"
        if kind == 0:  # the firmware cuts its buffer short
            line = {"payload_b64": base64.b64encode(orjson.dumps(good)[:37]).decode()}
        elif kind == 1:
            line = {"payload": {**good, "readings": [{"sensor": "current", "value": "n/a",
                                                      "unit": "A"}]}}
        elif kind == 2:
            line = {"payload": {k: v for k, v in good.items() if k != "machineType"}}
        elif kind == 3:
            line = {"payload": {**good, "timestamp": f"{ts}ms"}}
        else:
            topic, line = f"{base}/sensor", {"payload": good}
        lines.append({"ts": ts, "topic": topic, **line})
    return lines


def write_misbehaving(config: SimConfig, out_dir: Path) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = misbehaving_messages(config)
    (out_dir / "messages.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    return len(lines)


# -- the demo ------------------------------------------------------------------------------


def run_demo(
    config: SimConfig,
    broker_url: str | None = None,
    with_models: bool = True,
    wait_landed: Callable[[int], None] | None = None,
    families: tuple[str, ...] = DEMO_FAMILIES,
    live: bool = True,
) -> int:
    """``wait_landed``: gateways already run elsewhere (`make stack`): publish only, then
    call it with the number of messages published; it returns once they are in bronze."""
    settings = get_settings()
    ensure_dagster_home(settings)
    timings = Timings()
    replay = settings.replay_dir / f"demo-seed{config.seed}"
    with timings.step("history", f"simulate {config.duration_h:g} h of the plant"):
        if broker_url:
            stream_through_gateway(config, broker_url, settings, replay, wait_landed)
        else:
            summary = write_replay(config, replay)
            print(f"simulated {summary.messages} UNS messages -> {replay}")
        bad = write_misbehaving(config, settings.replay_dir / f"demo-seed{config.seed}-bad")
        print(f"{BAD_DEVICE} (broken firmware) published {bad} messages that break the "
              "contract")

    instance = dg.DagsterInstance.get()
    runner = plan.Runner(instance, plan.resources())
    lake = Lake(settings.lake_uri, settings.storage_options)
    with timings.step("bronze", plan.BRONZE.description):
        runner.run(plan.BRONZE)
    days = event_days(lake)
    with timings.step("silver", f"{len(days)} daily partitions ({', '.join(days)})"):
        runner.run(plan.SILVER, days)
    _print_summary()
    if with_models:
        story = Story(runner, lake, settings, config, timings, families)
        story.train_and_deploy()
        if live:
            story.live_and_canary()
        story.monitor()
    print(f"\nstep times (machine: {os.cpu_count()} cores):\n{timings.table()}")
    _next_steps(settings, with_models)
    return 0


@dataclass
class Story:
    """The steps after silver, sharing the runner, the lake and the timings."""

    runner: plan.Runner
    lake: Lake
    settings: Settings
    config: SimConfig
    timings: Timings
    families: tuple[str, ...]
    live_days: list[str] = field(default_factory=list)

    def train_and_deploy(self) -> None:
        skipped = [f for f in FAMILIES if f not in self.families]
        with self.timings.step("train", f"{', '.join(self.families)} (budget {DEMO_BUDGET})"):
            results = self.runner.run(plan.TRAIN, selection=plan.train_selection(self.families),
                                      run_config=_train_config(self.families),
                                      raise_on_error=False)
            verdicts = plan.gate_verdicts(results)
            for name in self.families:
                print(f"  model {name}: {self._gate_outcome(name)}"
                      f"{'; gate: ' + verdicts[name] if name in verdicts else ''}")
            for name in skipped:
                why = SKIPPED_WHY.get(name, "not part of the demo")
                print(f"  model {name}: not trained by the demo ({why}); `mfg train {name}`")
            print(f"  MLflow: {self.settings.mlflow_tracking_uri}")
        with self.timings.step("bundles", "signed bundles per edge, first deployment"):
            self._register_live_edges()
            edges = sorted(discover_edges(self.lake, self._store()))
            self.runner.add_edges(edges)
            self.runner.run(plan.BUNDLES, edges, raise_on_error=False)
            self.runner.run(plan.ROLLOUT, raise_on_error=False)
            self._print_bundles()

    def live_and_canary(self) -> None:
        from mfg_assets.loop import services

        if self.runner.instance.get_latest_materialization_event(
                champion_key(LIVE_FAMILY)) is None:
            print(f"\nno {LIVE_FAMILY} champion: the live edges and the canary are skipped")
            return
        first, second = self._live_configs()
        with ExitStack() as stack:
            with self.timings.step("live", f"broker, gateway, edges {', '.join(LIVE_EDGES)}; "
                                   f"{first.duration_h:g} h of the line"):
                try:
                    broker = services.start_mosquitto(self._workdir(), stack)
                except FileNotFoundError as exc:
                    print(f"  skipped: {exc} (make system-deps installs it)")
                    return
                line = LiveLine(broker, self.lake, self.settings, self._store())
                stack.callback(line.stop)
                line.start()
                line.play(first)
            with self.timings.step("retrain", f"{LIVE_FAMILY} v2 on the newer data"):
                self._land_live(first, features=False)  # the train step rebuilds them
                results = self.runner.run(
                    plan.TRAIN, selection=plan.train_selection([LIVE_FAMILY]),
                    run_config=_train_config([LIVE_FAMILY], seed=1), raise_on_error=False)
                verdict = plan.gate_verdicts(results).get(
                    LIVE_FAMILY, "the challenger did not reach its gate (see the run in the UI)")
                print(f"  challenger {LIVE_FAMILY}: gate: {verdict}")
                print(f"  model {LIVE_FAMILY}: {self._gate_outcome(LIVE_FAMILY)}")
                self.runner.run(plan.BUNDLES, list(LIVE_EDGES), raise_on_error=False,
                                run_config=None if self._new_champion() else _recalibrated())
            with self.timings.step("canary", "canary edge on the candidate, then decided"):
                self.runner.run(plan.ROLLOUT, run_config=_rollout_config())
                self._print_rollouts()
                line.refresh()  # the edges follow their assignments at once (not at a poll)
                line.play(second)
                self._land_live(second)
                self.runner.run(plan.ROLLOUT, run_config=_rollout_config())
                self._print_rollouts()
        # The stopped line's last gateway commits (heartbeats, the final batch) are newer
        # than the silver and features built during the canary: build them once more, so
        # that `make dev` finds the lakehouse in sync and has nothing to request.
        with self.timings.step("settle", "the stopped line's last commits to features"):
            self.runner.run(plan.BRONZE)
            self.runner.run(plan.SILVER, self.live_days)
            self.runner.run(plan.FEATURES, raise_on_error=False)

    def monitor(self) -> None:
        with self.timings.step("monitor", plan.MONITOR.description):
            self.runner.run(plan.MONITOR, raise_on_error=False)
            self._print_monitoring()

    # -- helpers ---------------------------------------------------------------------------

    def _store(self):
        return self.runner.resources["bundle_store"].store()

    def _workdir(self) -> Path:
        path = self.settings.data_dir / "demo"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _gate_outcome(self, name: str) -> str:
        event = self.runner.instance.get_latest_materialization_event(champion_key(name))
        if event is None:
            return "no champion: the gate refused the challenger (see its check in the UI)"
        meta = event.asset_materialization.metadata if event.asset_materialization else {}
        version = meta.get("model_version")
        return f"champion{' v' + str(version.value) if version else ''}"

    def _new_champion(self) -> bool:
        versions = self.lake.read(table(EDGE_BUNDLES)).filter(
            pl.col("model") == LIVE_FAMILY).get_column("model_version").unique()
        from mfg_assets.ml.registry import ModelRegistry, registered_name

        registry = ModelRegistry(self.settings.mlflow_tracking_uri,
                                 self.settings.mlflow_artifact_root)
        champion = registry.champion(registered_name(LIVE_FAMILY))
        new = champion is not None and str(champion.version) not in versions.to_list()
        if not new:
            print("  the gate kept the champion: the candidate is the same model with its "
                  "thresholds recalibrated on the newer data")
        return new

    def _register_live_edges(self) -> None:
        from mfg_assets.cli import _sim_device  # the simulator plant's idea of an edge

        store = self._store()
        for edge_id in LIVE_EDGES:
            if store.device(edge_id) is None:
                store.register(_sim_device(edge_id))

    def _live_configs(self) -> tuple[SimConfig, SimConfig]:
        start = self.config.start + timedelta(hours=self.config.duration_h)
        first = SimConfig(seed=self.config.seed + 1, start=start, duration_h=LIVE_HOURS[0],
                          sources=LIVE_SOURCES, plant=self.config.plant,
                          fault_rate_per_day=self.config.fault_rate_per_day)
        second = replace(first, seed=self.config.seed + 2,
                         start=start + timedelta(hours=LIVE_HOURS[0]), duration_h=LIVE_HOURS[1])
        return first, second

    def _land_live(self, live: SimConfig, features: bool = True) -> None:
        """The live hours' ground truth to bronze, the new silver days, then features."""
        folder = self.settings.replay_dir / f"demo-live-{live.seed}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "ground_truth.jsonl").write_bytes(
            b"".join(orjson.dumps(r) + b"\n" for r in ground_truth(live)))
        self.runner.run(plan.BRONZE)
        new = [d for d in event_days(self.lake) if d >= live.start.date().isoformat()]
        self.live_days = sorted(set(self.live_days) | set(new))
        self.runner.run(plan.SILVER, self.live_days)
        if features:
            self.runner.run(plan.FEATURES, raise_on_error=False)

    def _print_bundles(self) -> None:
        with _tables(tbl_rows=20, tbl_cols=-1, fmt_str_lengths=40):
            print(connect().sql(
                "SELECT edge_id, model, model_version, precision, round(threshold, 4) AS "
                "threshold FROM edge.bundles ORDER BY ALL").pl())

    def _print_rollouts(self) -> None:
        con = connect()
        rows = con.sql("SELECT model, candidate_version, state, canary_edges, reason "
                       "FROM edge.rollouts ORDER BY updated_at DESC LIMIT 3").fetchall()
        for model, version, state, canary, reason in rows:
            print(f"  rollout {model} v{version}: {state} (canary {canary}): {reason}")

    def _print_monitoring(self) -> None:
        con = connect()
        with _tables(tbl_rows=20, tbl_cols=-1, fmt_str_lengths=60):
            for sql in (
                "SELECT family, bool_or(family_drifted) AS drifted, max(n_recent) AS recent, "
                "round(max(psi), 3) AS max_psi FROM monitoring.drift WHERE computed_at = "
                "(SELECT max(computed_at) FROM monitoring.drift) GROUP BY ALL ORDER BY ALL",
                "SELECT date, scope, line, edge_id, predictions, round(defect_rate, 3) AS "
                "defect_rate, round(accuracy, 3) AS accuracy, rollout_stage FROM "
                "monitoring.inspection_stats ORDER BY ALL",
                "SELECT item, quantity, unit, round(monthly_usd, 2) AS usd_month "
                "FROM monitoring.cost ORDER BY ALL",
            ):
                try:
                    print(con.sql(sql).pl())
                except Exception as exc:  # a table the step could not build: say which
                    print(f"  ({str(exc).splitlines()[0]})")


class LiveLine:
    """A private broker's gateway and the line edges, in this process (the same classes
    `mfg gateway` and `mfg edge run` run)."""

    def __init__(self, broker_url: str, lake: Lake, settings: Settings, store) -> None:
        from mfg_assets.edge.runtime import EdgeRuntime, RuntimeConfig

        self.broker_url = broker_url
        self.gateway = Gateway(
            GatewayConfig(broker_url=broker_url, metrics_port=None,
                          client_id="mfg-demo-gateway"),
            load_contract(settings.contract_path), lake, enterprise=settings.enterprise)
        self.edges = [EdgeRuntime(RuntimeConfig(edge_id, broker_url, store_uri=store.uri,
                                                poll_s=2.0, heartbeat_s=30.0), store=store)
                      for edge_id in LIVE_EDGES]
        self.published = 0
        self._started: list[Any] = []

    def start(self) -> None:
        self.gateway.start()
        self._started.append(self.gateway)
        self.gateway.wait_online(timeout=30)
        for edge in self.edges:
            edge.start()
            self._started.append(edge)
            edge.wait_online(timeout=30)

    def refresh(self) -> None:
        for edge in self.edges:
            edge.refresh()

    def play(self, config: SimConfig, timeout_s: float = 300.0) -> None:
        """Publish ``config``'s hours; wait until the edges scored them and the gateway
        landed inputs, predictions and heartbeats."""
        counts = publish(config, self.broker_url, client_id=f"mfg-demo-sim-{config.seed}")
        self.published += counts["total"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            received = sum(e.stats.received for e in self.edges)
            idle = all(e._queue.empty() for e in self.edges)
            if idle and received and self._landed():
                break
            time.sleep(0.5)
        predictions = {e.config.edge_id: e.stats.predictions for e in self.edges}
        print(f"  published {counts['total']} UNS messages; edge predictions so far: "
              f"{predictions}; gateway committed {self.gateway.committed_batches} batches")

    def _landed(self) -> bool:
        """Everything published so far (inputs and what the edges sent) handled: inputs,
        predictions, and at least one heartbeat per edge."""
        sent = self.published + sum(e.stats.predictions for e in self.edges)
        return self.gateway.handled() >= sent + len(self.edges) and self._quiet()

    def _quiet(self) -> bool:
        before = self.gateway.handled()
        time.sleep(1.5)  # one gateway flush interval without anything new
        return self.gateway.handled() == before

    def stop(self) -> None:
        for service in reversed(self._started):
            try:
                service.stop()
            except Exception as exc:  # keep stopping the others
                print(f"  stopping {type(service).__name__}: {exc!r}")




def _train_config(families, seed: int = 0) -> dg.RunConfig:
    """``DEMO_BUDGET`` trials per family. A refused challenger fails its run by design (the
    gate is a blocking check): the demo prints the gate's verdict instead of its stack."""
    ops = {model_key(f).to_python_identifier(): {"config": {"budget": DEMO_BUDGET,
                                                            "seed": seed}}
           for f in families}
    return dg.RunConfig(ops=ops, **plan.SILENT)


def _recalibrated() -> dict:
    from mfg_assets.defs.edge import BUNDLES_KEY

    return {"ops": {BUNDLES_KEY.to_python_identifier(): {"config": {"quantile": 0.995}}},
            **plan.QUIET}


def _rollout_config() -> dict:
    from mfg_assets.defs.edge import ROLLOUTS_KEY

    return {"ops": {ROLLOUTS_KEY.to_python_identifier(): {"config": {
        "min_predictions": CANARY_MIN_PREDICTIONS, "min_labelled": CANARY_MIN_LABELLED,
        "canary_edges": [LIVE_EDGES[0]]}}}, **plan.QUIET}


def _next_steps(settings: Settings, with_models: bool) -> None:
    report = report_path(settings.data_dir)
    print("\nwhat to open next:")
    print("  make dev                    Dagster UI on http://127.0.0.1:3000: the runs are the "
          "jobs demo_bronze, demo_silver, demo_train, ...")
    if with_models:
        print(f"  the dashboard              {report} (or: mfg dashboard, "
              "http://127.0.0.1:8050/)")
        makefile = PACKAGE_DIR.parent / "Makefile"
        if makefile.exists() and "\nmlflow:" in makefile.read_text():
            print("  make mlflow                 MLflow UI on http://127.0.0.1:5000: the "
                  "training runs, metrics, registered versions")
        else:
            print(f"  MLflow                     .venv/bin/mlflow ui --backend-store-uri "
                  f"{settings.mlflow_tracking_uri}")
    print('  mfg sql "SELECT reason_code, count(*) FROM bronze.quarantine GROUP BY ALL"')
    print('  mfg sql "SELECT edge_id, bundle_id, count(*) FROM silver.edge_predictions '
          'GROUP BY ALL"')
    print('  mfg sql "SELECT model, state, reason FROM edge.rollouts"')


def stream_through_gateway(
    config: SimConfig,
    broker_url: str,
    settings: Settings,
    replay: Path,
    wait_landed: Callable[[int], None] | None = None,
) -> None:
    """Publish the simulated plant live and let an in-process gateway land it in bronze.

    Ground truth is not UNS traffic: it goes to the replay folder for the batch loader.
    """
    replay.mkdir(parents=True, exist_ok=True)
    truth = b"".join(orjson.dumps(record) + b"\n" for record in ground_truth(config))
    (replay / "ground_truth.jsonl").write_bytes(truth)
    if wait_landed is not None:
        counts = publish(config, broker_url)
        print(f"published {counts['total']} UNS messages to {broker_url}")
        wait_landed(counts["total"])
        return
    lake = Lake(settings.lake_uri, settings.storage_options)
    gateway_config = GatewayConfig(
        broker_url=broker_url, metrics_port=None, client_id=f"mfg-demo-gateway-{config.seed}"
    )
    gateway = Gateway(
        gateway_config, load_contract(settings.contract_path), lake, enterprise=settings.enterprise
    )
    gateway.start()
    try:
        gateway.wait_online(timeout=30)
        counts = publish(config, broker_url)
        print(f"published {counts['total']} UNS messages to {broker_url}")
        gateway.wait_for_handled(counts["total"], timeout=600)
    finally:
        gateway.stop()
    print(f"gateway committed {gateway.committed_batches} micro-batches to bronze")


def _tables(**options) -> pl.Config:
    """Tables as a person reads them: no polars shape line or dtype row around them."""
    return pl.Config(tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True,
                     tbl_hide_dtype_separator=True, **options)


def _print_summary() -> None:
    con = connect()
    with _tables(tbl_rows=30, tbl_cols=-1, fmt_str_lengths=50):
        print(
            con.sql(
                "SELECT machine_id, sensor, count(*) AS readings, round(avg(value), 2) AS mean "
                "FROM silver.sensor_readings GROUP BY ALL ORDER BY ALL"
            ).pl()
        )
        print(
            con.sql(
                "SELECT count(*) AS units, round(avg(yield_pct), 2) AS mean_yield, "
                "round(avg(passed::INT), 3) AS pass_rate FROM silver.process_runs"
            ).pl()
        )
        print(
            con.sql(
                "SELECT stage, reason_code, count(*) AS rows FROM bronze.quarantine GROUP BY ALL "
                "UNION ALL SELECT stage, reason_code, count(*) FROM silver.quarantine GROUP BY ALL"
            ).pl()
        )
    print('query it yourself: mfg sql "SELECT * FROM silver.sensor_readings LIMIT 5"')
