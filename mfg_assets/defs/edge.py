"""Edge: one signed bundle per edge device, and rollouts of new bundles across the fleet.

``edge/bundles`` is partitioned by edge device (dynamic partitions ``edge_devices``, added
by the ``edge_devices`` sensor from the edges' own telemetry in the UNS and from
``mfg edge register``). Per edge it picks the champion of the edge's model family (camera
edge: ``vision_defect``; line edge: ``sensor_anomaly``), exports it to ONNX (int8 where
within one point of fp32), calibrates the edge's own threshold on its own recent normal
data, signs the bundle, publishes it to the bundle store and appends a row to
``edge.bundles``.

``edge/rollouts`` takes the newest bundle per edge to a canary subset, compares canary vs
control predictions (``silver.edge_predictions``, QA labels where they exist) and promotes
or rolls back (``mfg_assets.edge.rollout``). With ``require_approval`` a promotion waits
for an operator, who approves by materializing ``edge/rollouts`` with ``approve: true``
(or by launching the ``approve_rollout`` job, which is exactly that).

The work is done by the edge room's plain functions; the helpers here only read the lake
and the registry to feed them (no Dagster inside them either).
"""

import json
import math
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from mfg_assets.defs.automation import (
    DEPLOYMENT_PRIORITY,
    IN_FLIGHT,
    PRIORITY_TAG,
    new_bundles_or_every,
    new_edge_or_new_champion,
    rollout_cadence,
    sensor_interval,
    whole_number_env,
)
from mfg_assets.defs.cost import with_cost
from mfg_assets.defs.features import feature_key
from mfg_assets.defs.metadata import table_metadata
from mfg_assets.defs.models import MlflowResource, champion_key
from mfg_assets.defs.resources import LakehouseResource
from mfg_assets.edge import rollout as ro
from mfg_assets.edge.bundle import Bundle, build_bundle, bundle_row, threshold_entry, verify_bundle
from mfg_assets.edge.store import PLACE, BundleStore, default_store_uri
from mfg_assets.lake.delta import Lake, WriteResult
from mfg_assets.lake.registry import table
from mfg_assets.ml.registry import DATA_TAG_PREFIX, ModelRegistry, registered_name

OWNER = "team:edge-platform"
BUNDLES_TABLE = "edge.bundles"
FAMILY_OF_KIND = {"camera": "vision_defect", "line": "sensor_anomaly"}
FEATURES_OF_FAMILY = {
    "vision_defect": "features.image_dataset",
    "sensor_anomaly": "features.sensor_windows",
}

edge_devices = dg.DynamicPartitionsDefinition(name="edge_devices")


class BundleStoreResource(dg.ConfigurableResource):
    """Where bundles, assignments and device registrations live (``MFG_BUNDLE_STORE``: a
    folder or ``s3://`` URI; ``data/bundles`` by default)."""

    uri: str

    def store(self) -> BundleStore:
        return BundleStore(self.uri)


def edge_resources() -> dict[str, dg.ConfigurableResource]:
    return {"bundle_store": BundleStoreResource(uri=default_store_uri())}


# -- which edges exist, and what they are ------------------------------------------------------


def discover_edges(lake: Lake, store: BundleStore) -> set[str]:
    """Edge ids seen in the UNS (silver and bronze telemetry) or registered in the store."""
    found = {device.edge_id for device in store.devices()}
    for name, column in (("silver.edge_telemetry", "edge_id"), ("bronze.edge_telemetry",
                                                                 "asset_id")):
        spec = table(name)
        if lake.exists(spec):
            ids = lake.scan(spec).select(pl.col(column).unique()).collect().to_series()
            found |= {i for i in ids.drop_nulls().to_list() if i}
    return found


@dataclass(frozen=True)
class EdgeProfile:
    edge_id: str
    kind: str | None  # "camera" | "line" | None (cannot tell yet)
    place: dict[str, str | None]
    assets: tuple[str, ...]  # camera ids or machine ids the edge scores
    source: str  # where the kind came from: "registration" | "telemetry" | "unknown"

    @property
    def family(self) -> str | None:
        return FAMILY_OF_KIND.get(self.kind or "")


def _topic_matches(pattern: str, topic: str) -> bool:
    """MQTT filter matching (``+`` one level, ``#`` the rest)."""
    parts, levels = pattern.split("/"), topic.split("/")
    for i, part in enumerate(parts):
        if part == "#":
            return True
        if i >= len(levels) or (part != "+" and part != levels[i]):
            return False
    return len(parts) == len(levels)


def _inventory(lake: Lake, name: str, asset: str, message_class: str) -> pl.DataFrame:
    """Distinct (place, asset[, machine_type]) of a silver table, with the UNS topic."""
    spec = table(name)
    extra = ["machine_type"] if "machine_type" in spec.polars_schema else []
    if not lake.exists(spec):
        return pl.DataFrame(schema={**{p: pl.String for p in PLACE}, asset: pl.String,
                                    **{e: pl.String for e in extra}, "topic": pl.String})
    frame = lake.scan(spec).select(*PLACE, asset, *extra).unique().collect()
    return frame.with_columns(
        pl.concat_str([*PLACE, asset, pl.lit(message_class)], separator="/").alias("topic")
    )


def _telemetry_place(lake: Lake, edge_id: str) -> dict[str, str | None] | None:
    """The edge's place from its latest heartbeat (silver, else bronze)."""
    for name, column, ts in (("silver.edge_telemetry", "edge_id", "ts"),
                             ("bronze.edge_telemetry", "asset_id", "event_time")):
        spec = table(name)
        if not lake.exists(spec):
            continue
        rows = (lake.scan(spec).filter(pl.col(column) == edge_id).sort(ts)
                .select(*PLACE).tail(1).collect())
        if rows.height:
            return rows.row(0, named=True)
    return None


def edge_profile(lake: Lake, store: BundleStore, edge_id: str) -> EdgeProfile:
    """What an edge is and what it scores: from its registration, else from where its
    telemetry comes from (the cameras of its cell, the machines of its line)."""
    cameras = _inventory(lake, "silver.inspection_images", "camera_id", "inspection")
    machines = _inventory(lake, "silver.sensor_readings", "machine_id", "sensors")
    device = store.device(edge_id)
    if device is not None:
        def scored(frame: pl.DataFrame, column: str) -> list[str]:
            hits = [r[column] for r in frame.iter_rows(named=True)
                    if r["topic"] and any(_topic_matches(f, r["topic"]) for f in device.sources)]
            if not hits:  # no silver data yet: the asset level of the filters themselves
                hits = [f.split("/")[5] for f in device.sources
                        if len(f.split("/")) > 5 and f.split("/")[5] not in ("+", "#")]
            return sorted(set(hits))

        assets = scored(cameras, "camera_id") if device.kind == "camera" else scored(
            machines, "machine_id")
        return EdgeProfile(edge_id, device.kind, dict(device.place), tuple(assets),
                           "registration")
    place = _telemetry_place(lake, edge_id)
    if place is None:
        return EdgeProfile(edge_id, None, {}, (), "unknown")
    same_cell = (pl.col("line") == place["line"]) & (pl.col("cell") == place["cell"])
    cams = cameras.filter(same_cell).get_column("camera_id").unique().sort().to_list()
    if cams:
        return EdgeProfile(edge_id, "camera", place, tuple(cams), "telemetry")
    on_line = machines.filter(pl.col("line") == place["line"])
    ids = on_line.get_column("machine_id").unique().sort().to_list()
    return EdgeProfile(edge_id, "line" if ids else None, place, tuple(ids), "telemetry")


# -- building one edge's bundle ----------------------------------------------------------------


@dataclass
class BundleOutcome:
    profile: EdgeProfile
    skipped: str | None = None  # why no bundle was built
    bundle: Bundle | None = None  # manifest of the stored bundle (its .path is a temp copy)
    new: bool = False  # False: the identical bundle was already in the store
    location: str = ""  # the bundle's folder in the store
    write: WriteResult | None = None
    model_version: str = ""
    calibration: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BundleSettings:
    quantile: float = 0.99
    calibration_rows: int = 300
    check_rows: int = 400
    int8: bool = True
    max_int8_loss: float = 0.01


def build_edge_bundle(
    lake: Lake,
    registry: ModelRegistry,
    store: BundleStore,
    edge_id: str,
    settings: BundleSettings = BundleSettings(),
) -> BundleOutcome:
    """Champion -> ONNX -> the edge's own threshold -> signed bundle -> store + edge.bundles."""
    profile = edge_profile(lake, store, edge_id)
    outcome = BundleOutcome(profile)
    family = profile.family
    if family is None:
        outcome.skipped = (f"{edge_id}: cannot tell whether it is a camera or a line edge (no "
                           "registration, and its telemetry's place matches no camera or "
                           "machine in silver); register it with `mfg edge register`")
        return outcome
    name = registered_name(family)
    champion = registry.champion(name)
    if champion is None:
        outcome.skipped = (f"{edge_id} is a {profile.kind} edge and {name} has no champion "
                           f"yet: materialize {champion_key(family).to_user_string()} first")
        return outcome
    if not profile.assets:
        outcome.skipped = (f"{edge_id} ({profile.kind} edge): none of its sources matches a "
                           "camera or machine seen in silver yet")
        return outcome
    outcome.model_version = str(champion.version)
    features_spec = table(FEATURES_OF_FAMILY[family])
    version = lake.version(features_spec)
    if version is None:
        raise ValueError(f"{features_spec.qualified_name} does not exist yet")
    features = lake.read(features_spec, version)  # pinned: the version we record
    trained_on = {k.removeprefix(DATA_TAG_PREFIX): None if v == "None" else int(v)
                  for k, v in champion.tags.items() if k.startswith(DATA_TAG_PREFIX)}
    with tempfile.TemporaryDirectory(prefix=f"mfg-bundle-{edge_id}-") as tmp_dir:
        tmp = Path(tmp_dir)
        if family == "vision_defect":
            from mfg_assets.ml import vision as module

            prepared = _prepare_vision(registry, module, champion, features, profile, tmp,
                                       settings)
        else:
            from mfg_assets.ml import anomaly as module

            prepared = _prepare_windows(registry, module, champion, features, profile, tmp,
                                        settings)
        if isinstance(prepared, str):
            outcome.skipped = prepared
            return outcome
        export, preprocessing, threshold, notes = prepared
        outcome.notes = notes
        outcome.calibration = {k: v for k, v in threshold.items() if k != "value"}
        lineage = {
            "registered_model": name,
            "model_version": str(champion.version),
            "mlflow_run": champion.run_id or "",
            "delta_versions": trained_on,  # what the model trained on
            "calibration": {features_spec.qualified_name: version},  # the threshold's data
        }
        built = build_bundle(
            tmp / "bundle", edge_id=edge_id, model_file=export.path,
            preprocessing=preprocessing, threshold=threshold, model_name=family,
            model_version=champion.version, lineage=lineage, export=export.manifest_entry(),
        )
        outcome.new = not store.has(built.bundle_id)
        if outcome.new:
            store.publish(built.path)
        # Describe what the store holds (an identical bundle keeps its first manifest), and
        # prove that what was published verifies.
        outcome.bundle = verify_bundle(store.fetch(built.bundle_id, tmp / "fetched"))
        outcome.location = f"{store.uri.rstrip('/')}/bundles/{built.bundle_id}"
    spec = table(BUNDLES_TABLE)
    known = lake.scan(spec).filter(pl.col("bundle_id") == outcome.bundle.bundle_id)
    if known.select(pl.len()).collect().item() == 0:
        row = bundle_row(outcome.bundle, store.uri)
        outcome.write = lake.append(spec, pl.DataFrame([row], schema=spec.polars_schema),
                                    edge=edge_id)
    return outcome


Prepared = tuple[Any, dict[str, Any], dict[str, Any], list[str]]


def _prepare_vision(
    registry: ModelRegistry, module: Any, champion: Any, features: pl.DataFrame,
    profile: EdgeProfile, tmp: Path, settings: BundleSettings,
) -> Prepared | str:
    from mfg_assets.edge.export import QuantCheck, export_model
    from mfg_assets.edge.predictor import calibration_scores, image_preprocessing, read_png

    net, info = registry.load(module, champion, tmp / "model")
    size = int(info["image_size"])
    normal = info.get("normal_class", "ok")
    mine = features.filter(pl.col("camera_id").is_in(list(profile.assets)))
    ok = mine.filter(pl.col("label") == normal).sort("ts", "image_id").tail(
        settings.calibration_rows)
    cams = ", ".join(profile.assets)
    if ok.height < 10:
        return (f"{profile.edge_id}: only {ok.height} '{normal}' images of {cams} to "
                "calibrate its threshold on (need 10)")
    labelled = mine.filter(pl.col("label").is_not_null())
    check_rows = labelled.filter(pl.col("split") == "test")
    if check_rows.height < 50:
        check_rows = labelled
    check_rows = check_rows.sort("ts", "image_id").tail(settings.check_rows)
    check_x = module.decode(check_rows.get_column("png").to_list(), size)
    labels = check_rows.get_column("label").to_list()
    if info["mode"] == "one_class":
        preprocessing = image_preprocessing(size, None, normal, output="score")
        check = QuantCheck(check_x, np.array([lab != normal for lab in labels]),
                           threshold=float(info["threshold"]), max_loss=settings.max_int8_loss)
    else:
        classes = list(info["classes"])
        preprocessing = image_preprocessing(size, classes, normal)
        index = np.array([classes.index(lab) if lab in classes else -1 for lab in labels])
        check = QuantCheck(check_x, index, max_loss=settings.max_int8_loss)
    # Static int8 calibrated on this edge's own images: its light sets activation ranges.
    calibration = module.decode(mine.sort("ts").tail(64).get_column("png").to_list(), size)
    export = export_model(
        net, check_x[:1], tmp / "export", quantization="static" if settings.int8 else None,
        calibration=calibration, check=check,
    )
    pixels = [read_png(png) for png in ok.get_column("png").to_list()]
    scores = calibration_scores(export.path, preprocessing, pixels)
    last = ok.get_column("ts").max()
    source = (f"{ok.height} most recent '{normal}' images of {cams} "
              f"(features.image_dataset, up to {last})")
    return export, preprocessing, threshold_entry(scores, settings.quantile, source), []


def _prepare_windows(
    registry: ModelRegistry, module: Any, champion: Any, features: pl.DataFrame,
    profile: EdgeProfile, tmp: Path, settings: BundleSettings,
) -> Prepared | str:
    from mfg_assets.edge.export import QuantCheck, export_model
    from mfg_assets.edge.predictor import calibration_scores, window_preprocessing
    from mfg_assets.edge.windows import WindowSpec

    model, info = registry.load(module, champion, tmp / "model")
    mine = features.filter(pl.col("machine_id").is_in(list(profile.assets)))
    types = Counter(
        mine.select("machine_id", "machine_type").unique().get_column("machine_type").to_list()
    )
    known = [(n, t) for t, n in types.items() if t in info["machine_types"]]
    if not known:
        return (f"{profile.edge_id}: the {registered_name('sensor_anomaly')} champion knows "
                f"none of the machine types of {', '.join(profile.assets)} ({sorted(types)})")
    # One bundle scores one machine type: the edge's most common one.
    machine_type = sorted(known, key=lambda pair: (-pair[0], pair[1]))[0][1]
    notes = [f"machine types not covered by this bundle: {sorted(set(types) - {machine_type})}"
             ] if len(types) > 1 else []
    spec = info["machine_types"][machine_type]
    columns = list(spec["columns"])
    rows = mine.filter(pl.col("machine_type") == machine_type).sort("window_start")

    def matrix(frame: pl.DataFrame) -> np.ndarray:
        present = [pl.col(c) if c in frame.columns else pl.lit(None) for c in columns]
        x = frame.select(e.cast(pl.Float32).alias(c) for e, c in zip(present, columns,
                                                                     strict=True))
        return x.fill_null(float("nan")).to_numpy().astype(np.float32)

    normal = rows.filter(~pl.col("is_fault").fill_null(False)).tail(settings.calibration_rows)
    if normal.height < 10:
        return (f"{profile.edge_id}: only {normal.height} normal {machine_type} windows to "
                "calibrate its threshold on (need 10)")
    labelled = rows.filter(pl.col("is_fault").is_not_null()).tail(settings.check_rows)
    check = (QuantCheck(matrix(labelled), labelled.get_column("is_fault").to_numpy(),
                        threshold=float(spec["threshold"]), max_loss=settings.max_int8_loss)
             if labelled.height else
             QuantCheck(matrix(normal), None, threshold=float(spec["threshold"]),
                        max_loss=settings.max_int8_loss))
    x_normal = matrix(normal)
    export = export_model(
        model.net(machine_type), x_normal[:1], tmp / "export",
        quantization="dynamic" if settings.int8 else None, check=check,
    )
    first = rows.row(0, named=True)
    every_s = (first["window_end"] - first["window_start"]).total_seconds()
    # The training side drops windows below half the usual sample count; so does the edge.
    min_samples = max(1, int(0.5 * float(rows.get_column("n_samples").median())))
    window = WindowSpec(machine_type, every_s, tuple(columns), min_samples)
    preprocessing = window_preprocessing(window)
    scores = calibration_scores(export.path, preprocessing, x_normal)
    source = (f"{normal.height} most recent normal {machine_type} windows of "
              f"{', '.join(profile.assets)} (features.sensor_windows)")
    return export, preprocessing, threshold_entry(scores, settings.quantile, source), notes


# -- rollouts ----------------------------------------------------------------------------------


@dataclass
class RolloutStep:
    model: str
    action: str  # first_deployment | started | advanced | approved | unchanged | waiting
    detail: str
    rollout: ro.Rollout | None = None
    assigned: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RolloutSettings:
    policy: ro.RolloutPolicy = field(default_factory=ro.RolloutPolicy)
    canary_edges: tuple[str, ...] = ()
    require_approval: bool = False
    approve: bool = False
    operator: str = "operator"
    rollout_id: str = ""


def newest_bundles(lake: Lake) -> pl.DataFrame:
    """One row per (model, edge): its newest bundle in ``edge.bundles``."""
    frame = lake.read(table(BUNDLES_TABLE))
    return frame.sort("created_at", "bundle_id").group_by("model", "edge_id",
                                                          maintain_order=True).last()


def evidence(lake: Lake, model: str, since: datetime, until: datetime) -> tuple[
    pl.DataFrame, pl.DataFrame | None, pl.DataFrame
]:
    """Predictions, labels (QA labels of images, fault labels of windows) and telemetry."""
    in_window = (pl.col("ts") >= since) & (pl.col("ts") <= until)
    predictions = lake.scan(table("silver.edge_predictions")).filter(in_window).select(
        "edge_id", "bundle_id", "source_id", "value", "latency_ms", "ts").collect()
    telemetry = lake.scan(table("silver.edge_telemetry")).filter(in_window).select(
        "edge_id", "ts", "log_errors").collect()
    labels: pl.DataFrame | None = None
    if model == "vision_defect":
        labels = lake.scan(table("silver.inspection_images")).filter(
            pl.col("label").is_not_null()).select(
            pl.col("image_id").alias("source_id"), "label").collect()
    elif model == "sensor_anomaly":
        windows = lake.scan(table("features.sensor_windows")).filter(
            pl.col("is_fault").is_not_null())
        labels = windows.select(
            pl.concat_str("machine_id", pl.lit("/"),
                          pl.col("window_start").dt.epoch("ms").cast(pl.String)).alias(
                "source_id"),
            pl.col("is_fault").cast(pl.String).alias("label"),
        ).collect()
    return predictions, labels, telemetry


def run_rollouts(
    lake: Lake, store: BundleStore, settings: RolloutSettings, now: datetime | None = None
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


def _advance(lake: Lake, store: BundleStore, rollout: ro.Rollout, settings: RolloutSettings,
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
           settings: RolloutSettings, now: datetime) -> RolloutStep:
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
    canary = _canary(settings, changed, len(fleet))
    version = ",".join(sorted({versions[e] for e in canary}))
    rollout = ro.start_rollout(
        lake, store, model=model, version=version, candidate_bundles=fleet,
        canary_edges=canary, require_approval=settings.require_approval,
        policy=settings.policy, now=now,
    )
    return RolloutStep(model, "started", rollout.reason, rollout, step.assigned)


def _canary(settings: RolloutSettings, changed: list[str], fleet_size: int) -> list[str]:
    if settings.canary_edges:
        wrong = sorted(set(settings.canary_edges) - set(changed))
        if wrong:
            raise ValueError(f"canary edges {wrong} have no new bundle (new: {changed})")
        return sorted(settings.canary_edges)
    count = max(1, math.ceil(settings.policy.canary_fraction * fleet_size))
    return changed[: min(count, len(changed), fleet_size - 1)]


def _rollout_of(lake: Lake, model: str, candidates: dict[str, str]) -> ro.Rollout | None:
    """The finished rollout of exactly these bundles, if any (a rolled-back candidate is
    not retried by itself)."""
    wanted = json.dumps(candidates, sort_keys=True)
    rows = lake.read(table(ro.ROLLOUTS_TABLE)).filter(
        (pl.col("model") == model) & (pl.col("candidate_bundles") == wanted))
    rows = rows.sort("updated_at")
    return ro.Rollout.from_row(rows.row(-1, named=True)) if rows.height else None


# -- Dagster -----------------------------------------------------------------------------------


@dg.sensor(
    name="edge_devices",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds every edge device seen in the UNS (its telemetry in bronze/silver) or "
    "registered with `mfg edge register` as a partition of edge/bundles.",
)
def edge_devices_sensor(
    context: dg.SensorEvaluationContext,
    lakehouse: LakehouseResource,
    bundle_store: BundleStoreResource,
) -> dg.SensorResult | dg.SkipReason:
    known = set(context.instance.get_dynamic_partitions(edge_devices.name))
    new = sorted(discover_edges(lakehouse.lake(), bundle_store.store()) - known)
    if not new:
        return dg.SkipReason(f"no new edge devices ({len(known)} known)")
    context.log.info(f"new edge devices: {', '.join(new)}")
    return dg.SensorResult(dynamic_partitions_requests=[edge_devices.build_add_request(new)])


class BundleConfig(dg.Config):
    quantile: float = Field(
        default=0.99, gt=0.0, lt=1.0,
        description="The edge's threshold: this quantile of its scores on its own recent "
        "normal data (ok images / non-fault windows).",
    )
    calibration_rows: int = Field(default=300, ge=10,
                                  description="Most recent normal images/windows to use.")
    int8: bool = Field(default=True, description="Try int8 (kept only within max_int8_loss).")
    max_int8_loss: float = Field(default=0.01, ge=0.0,
                                 description="Accuracy int8 may lose against fp32 (0.01 = 1 "
                                 "point); more loss keeps fp32.")


bundles_condition = new_edge_or_new_champion(
    [champion_key("vision_defect"), champion_key("sensor_anomaly")]
)


@dg.asset(
    key=dg.AssetKey(["edge", "bundles"]),
    partitions_def=edge_devices,
    deps=[
        champion_key("vision_defect"),
        champion_key("sensor_anomaly"),
        feature_key("features.image_dataset"),
        feature_key("features.sensor_windows"),
        # the edge's place (camera or line edge): read across every day
        dg.AssetDep(dg.AssetKey(table("silver.edge_telemetry").asset_key_path),
                    partition_mapping=dg.AllPartitionMapping()),
    ],
    group_name="edge",
    kinds={"onnx", "delta"},
    owners=[OWNER],
    description="One signed deployment bundle per edge device: the champion of the edge's "
    "model family (camera: vision_defect, line: sensor_anomaly) as ONNX (int8 where within "
    "one point of fp32), with a threshold calibrated on that edge's own recent normal data. "
    "Published to the bundle store; one row per bundle in edge.bundles.",
    metadata={"dagster/table_name": BUNDLES_TABLE},
    automation_condition=bundles_condition,
)
@with_cost  # cost/* metadata (mfg_assets.defs.cost)
def bundles(
    context: dg.AssetExecutionContext,
    config: BundleConfig,
    lakehouse: LakehouseResource,
    mlflow: MlflowResource,
    bundle_store: BundleStoreResource,
) -> dg.MaterializeResult:
    lake = lakehouse.lake()
    settings = BundleSettings(config.quantile, config.calibration_rows, int8=config.int8,
                              max_int8_loss=config.max_int8_loss)
    try:
        outcome = build_edge_bundle(lake, mlflow.registry(), bundle_store.store(),
                                    context.partition_key, settings)
    except ValueError as exc:  # missing inputs: say which, fail this edge only
        raise dg.Failure(f"{context.partition_key}: {exc}") from exc
    return dg.MaterializeResult(metadata=bundle_metadata(lake, outcome))


def bundle_metadata(lake: Lake, outcome: BundleOutcome) -> dict[str, Any]:
    profile = outcome.profile
    meta: dict[str, Any] = {
        "edge_id": profile.edge_id,
        "edge_kind": profile.kind or "unknown",
        "edge_kind_from": profile.source,
        "scores": ", ".join(profile.assets) or "nothing known",
    }
    if outcome.bundle is None:
        # A skip is not a failure: a line edge waits for the first anomaly champion, and the
        # automation builds its bundle when that champion appears.
        meta |= {"skipped": outcome.skipped or "", "bundle_id": "none"}
        return meta
    manifest = outcome.bundle.manifest
    model = manifest["model"]
    meta |= {
        "bundle_id": outcome.bundle.bundle_id,
        "new_bundle": outcome.new,
        "model": registered_name(model["name"]),
        "model_version": str(model["version"]),
        "precision": model.get("precision", "fp32"),
        "precision_reason": model.get("reason", ""),
        "threshold": outcome.bundle.threshold,
        "threshold_calibration": dg.MetadataValue.json(outcome.calibration),
        "manifest_checksums": dg.MetadataValue.json(manifest["files"]),
        "lineage": dg.MetadataValue.json(manifest["lineage"]),
        "bundle_location": dg.MetadataValue.path(outcome.location),
    }
    if model.get("quantization_metrics"):
        meta["quantization_metrics"] = dg.MetadataValue.json(model["quantization_metrics"])
    if outcome.notes:
        meta["notes"] = "; ".join(outcome.notes)
    meta |= table_metadata(lake, table(BUNDLES_TABLE), outcome.write)
    return meta


# The evidence a canary needs before a decision, per group. Production keeps the policy's
# 50/30; the closed-loop demo and test lower it by environment, because their live plant
# produces a few predictions per edge and minute and the loop has minutes, not hours.
MIN_PREDICTIONS_ENV = "MFG_ROLLOUT_MIN_PREDICTIONS"
MIN_LABELLED_ENV = "MFG_ROLLOUT_MIN_LABELLED"


class RolloutConfig(dg.Config):
    canary_fraction: float = Field(default=0.25, gt=0.0, lt=1.0,
                                   description="Share of a model's edges in the canary.")
    canary_edges: list[str] = Field(default_factory=list,
                                    description="Explicit canary edges (overrides the fraction).")
    require_approval: bool = Field(default=False,
                                   description="A new rollout's promotion waits for an operator.")
    approve: bool = Field(default=False,
                          description="Operator approval of the running rollout(s): promotes "
                          "one awaiting approval, pre-approves one still in canary.")
    operator: str = Field(default="operator", description="Who approves (recorded).")
    rollout_id: str = Field(default="", description="Approve only this rollout.")
    window_minutes: float = Field(default=60.0, gt=0.0,
                                  description="Compare the most recent window only.")
    min_predictions: int = Field(
        default=whole_number_env(MIN_PREDICTIONS_ENV, ro.RolloutPolicy.min_predictions), ge=1,
        description=f"Per group, before deciding (default: {MIN_PREDICTIONS_ENV}, else 50).")
    min_labelled: int = Field(
        default=whole_number_env(MIN_LABELLED_ENV, ro.RolloutPolicy.min_labelled), ge=1,
        description="Labelled predictions per group, when labels exist (default: "
        f"{MIN_LABELLED_ENV}, else 30).")
    max_accuracy_drop: float = Field(default=0.01, ge=0.0,
                                     description="Canary accuracy loss tolerated (0.01 = 1 pt).")
    as_of: str = Field(default="", description="Evaluate as of this UTC time (ISO; empty: "
                       "now). For replays of past data.")

    def settings(self) -> RolloutSettings:
        policy = ro.RolloutPolicy(
            canary_fraction=self.canary_fraction,
            window=timedelta(minutes=self.window_minutes),
            min_predictions=self.min_predictions,
            min_labelled=self.min_labelled,
            max_accuracy_drop=self.max_accuracy_drop,
        )
        return RolloutSettings(policy, tuple(self.canary_edges), self.require_approval,
                               self.approve, self.operator, self.rollout_id)

    def now(self) -> datetime:
        if not self.as_of:
            return datetime.now(UTC)
        moment = datetime.fromisoformat(self.as_of.replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# Re-evaluate running canaries every ten minutes (MFG_ROLLOUT_CRON), react to new bundles at once.
rollouts_condition = new_bundles_or_every(rollout_cadence(), dg.AssetKey(["edge", "bundles"]))

ROLLOUTS_KEY = dg.AssetKey(["edge", "rollouts"])


@dg.asset(
    key=ROLLOUTS_KEY,
    deps=[
        dg.AssetKey(["edge", "bundles"]),
        dg.AssetKey(table("silver.edge_predictions").asset_key_path),
        dg.AssetKey(table("silver.inspection_images").asset_key_path),
    ],
    group_name="edge",
    kinds={"delta"},
    owners=[OWNER],
    description="Rollouts of new edge bundles: canary subset first, canary vs control over "
    "the latest window of edge predictions (accuracy against QA labels where they exist), "
    "then promoted to the fleet or rolled back automatically; with require_approval a "
    "promotion waits for an operator (approve: true). State in edge.rollouts.",
    metadata={"dagster/table_name": ro.ROLLOUTS_TABLE},
    automation_condition=rollouts_condition,
)
@with_cost  # cost/* metadata (mfg_assets.defs.cost)
def rollouts(
    context: dg.AssetExecutionContext,
    config: RolloutConfig,
    lakehouse: LakehouseResource,
    bundle_store: BundleStoreResource,
) -> dg.MaterializeResult:
    lake = lakehouse.lake()
    try:
        steps = run_rollouts(lake, bundle_store.store(), config.settings(), config.now())
    except ValueError as exc:  # a bad canary list, an edge without bundle: say so
        raise dg.Failure(str(exc)) from exc
    for step in steps:
        context.log.info(f"{step.model}: {step.action}: {step.detail}")
    return dg.MaterializeResult(metadata=rollout_metadata(lake, steps))


def rollout_metadata(lake: Lake, steps: list[RolloutStep]) -> dict[str, Any]:
    lines = ["| model | action | rollout | stage | decision | canary | control | reason |",
             "|---|---|---|---|---|---|---|---|"]
    meta: dict[str, Any] = {}
    for step in steps:
        r = step.rollout
        stage = r.state if r else "none"
        lines.append(
            f"| {step.model} | {step.action} | {r.rollout_id if r else ''} | {stage} | "
            f"{(r.decision or '') if r else ''} | {', '.join(r.canary_edges) if r else ''} | "
            f"{', '.join(r.control_edges) if r else ''} | {step.detail.replace('|', '/')} |"
        )
        meta[f"{step.model}/action"] = step.action
        meta[f"{step.model}/stage"] = stage
        meta[f"{step.model}/reason"] = step.detail
        if step.assigned:
            meta[f"{step.model}/assigned"] = dg.MetadataValue.json(step.assigned)
        if r is not None:
            meta[f"{step.model}/rollout_id"] = r.rollout_id
            meta[f"{step.model}/decision"] = r.decision or "none"
            for group in ("canary", "control"):
                if group in r.metrics:
                    meta[f"{step.model}/{group}"] = dg.MetadataValue.json(r.metrics[group])
    meta["rollouts"] = dg.MetadataValue.md("\n".join(lines) if steps else "no edge bundles yet")
    spec = table(ro.ROLLOUTS_TABLE)
    meta |= table_metadata(lake, spec, None)
    meta["edge_bundles_version"] = lake.version(table(BUNDLES_TABLE))
    return meta


approve_rollout_job = dg.define_asset_job(
    "approve_rollout",
    selection=dg.AssetSelection.assets(ROLLOUTS_KEY),
    description="Operator approval: promotes the rollouts awaiting approval (edit 'operator' "
    "and, to approve one rollout only, 'rollout_id' in the launchpad).",
    config={"ops": {ROLLOUTS_KEY.to_python_identifier(): {"config": {"approve": True}}}},
)

# What a canary is judged on: predictions, and the labels (QA images, fault windows) they are
# scored against.
CANARY_EVIDENCE = (
    dg.AssetKey(table("silver.edge_predictions").asset_key_path),
    dg.AssetKey(table("silver.inspection_images").asset_key_path),
    feature_key("features.sensor_windows"),
)


def last_materializations(instance: dg.DagsterInstance,
                          keys: list[dg.AssetKey]) -> dict[dg.AssetKey, int]:
    """Storage id of each key's last materialization (keys never materialized: absent)."""
    return {r.asset_entry.asset_key: r.asset_entry.last_materialization_record.storage_id
            for r in instance.get_asset_records(keys)
            if r.asset_entry.last_materialization_record is not None}


def evaluation_in_flight(instance: dg.DagsterInstance) -> bool:
    return any(ROLLOUTS_KEY in (r.dagster_run.asset_selection or ())
               for r in instance.get_run_records(dg.RunsFilter(statuses=list(IN_FLIGHT))))


@dg.sensor(
    name="canary_evidence",
    minimum_interval_seconds=sensor_interval(30),
    default_status=dg.DefaultSensorStatus.RUNNING,
    asset_selection=[ROLLOUTS_KEY],
    description="While a canary runs, re-evaluates edge/rollouts as soon as new predictions "
    "or labels land, instead of at the next rollout cadence tick: the canary is promoted or "
    "rolled back once its evidence suffices.",
)
def canary_evidence_sensor(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource):
    canaries = [r.rollout_id for r in ro.active_rollouts(lakehouse.lake()) if r.state == "canary"]
    if not canaries:
        return dg.SkipReason("no canary running")
    ids = last_materializations(context.instance, [*CANARY_EVIDENCE, ROLLOUTS_KEY])
    evaluated = ids.pop(ROLLOUTS_KEY, None)
    newest = max(ids.values(), default=None)
    if newest is None or (evaluated is not None and newest <= evaluated):
        return dg.SkipReason("no new predictions or labels since the last evaluation")
    if evaluation_in_flight(context.instance):
        return dg.SkipReason("an evaluation of edge/rollouts is queued or running")
    return dg.RunRequest(
        run_key=f"evidence-{newest}",
        asset_selection=[ROLLOUTS_KEY],
        tags={PRIORITY_TAG: DEPLOYMENT_PRIORITY, "mfg/trigger": "canary_evidence",
              "mfg/rollouts": ",".join(canaries)},
    )


edge_assets = [bundles, rollouts]
edge_sensors = [edge_devices_sensor, canary_evidence_sensor]
edge_jobs = [approve_rollout_job]
