"""Which edges exist, what each one is, and one signed bundle per edge (no Dagster).

An edge is known from its registration in the bundle store (``mfg edge register``) or from
its own telemetry in the UNS. Its kind (camera or line edge) says which model family it
serves (``ml/families.served_by``); per edge, ``build_edge_bundle`` takes that family's
champion, exports it to ONNX (int8 where within one point of fp32), calibrates the edge's
own threshold on its own recent normal data, signs the bundle, publishes it to the bundle
store and appends a row to ``edge.bundles``. ``bundle_summary`` says what happened, as plain
data for a person (the Dagster layer turns it into metadata).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from paho.mqtt.client import topic_matches_sub

from mfg_assets.edge.bundle import Bundle, build_bundle, bundle_row, threshold_entry, verify_bundle
from mfg_assets.edge.store import PLACE, BundleStore
from mfg_assets.lake.delta import Lake, WriteResult
from mfg_assets.lake.names import (
    BRONZE_EDGE_TELEMETRY,
    EDGE_BUNDLES,
    SILVER_EDGE_PREDICTIONS,
    SILVER_EDGE_TELEMETRY,
    SILVER_INSPECTION_IMAGES,
    SILVER_LABELS,
    SILVER_SENSOR_READINGS,
)
from mfg_assets.lake.registry import TableSpec, table
from mfg_assets.ml import families
from mfg_assets.ml.registry import DATA_TAG_PREFIX, ModelRegistry, registered_name

BUNDLES: TableSpec = table(EDGE_BUNDLES)
# Where an edge's kind and place come from: (table, edge id column, time column).
_TELEMETRY = ((table(SILVER_EDGE_TELEMETRY), "edge_id", "ts"),
              (table(BRONZE_EDGE_TELEMETRY), "asset_id", "event_time"))


def bundle_location(store: BundleStore, bundle_id: str) -> str:
    """The folder of a bundle in the store (the layout of ``edge/store.py``)."""
    return f"{store.uri.rstrip('/')}/bundles/{bundle_id}"


# -- which edges exist, and what they are ------------------------------------------------------


def discover_edges(lake: Lake, store: BundleStore) -> set[str]:
    """Edge ids seen in the UNS (silver and bronze telemetry) or registered in the store."""
    found = {device.edge_id for device in store.devices()}
    for source, column, _ in _TELEMETRY:
        if lake.exists(source):
            ids = lake.scan(source).select(pl.col(column).unique()).collect().to_series()
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
        return families.served_by(self.kind)


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
    for source, column, ts in _TELEMETRY:
        if not lake.exists(source):
            continue
        rows = (lake.scan(source).filter(pl.col(column) == edge_id).sort(ts)
                .select(*PLACE).tail(1).collect())
        if rows.height:
            return rows.row(0, named=True)
    return None


def edge_profile(lake: Lake, store: BundleStore, edge_id: str) -> EdgeProfile:
    """What an edge is and what it scores: from its registration, else from where its
    telemetry comes from (the cameras of its cell, the machines of its line)."""
    cameras = _inventory(lake, SILVER_INSPECTION_IMAGES, "camera_id", "inspection")
    machines = _inventory(lake, SILVER_SENSOR_READINGS, "machine_id", "sensors")
    device = store.device(edge_id)
    if device is not None:
        def scored(frame: pl.DataFrame, column: str) -> list[str]:
            hits = [r[column] for r in frame.iter_rows(named=True)
                    if r["topic"] and any(topic_matches_sub(f, r["topic"]) for f in device.sources)]
            if not hits:  # no silver data yet: the asset level of the filters themselves
                hits = [f.split("/")[5] for f in device.sources
                        if len(f.split("/")) > 5 and f.split("/")[5] not in ("+", "#")]
            return sorted(set(hits))

        assets = scored(cameras, "camera_id") if device.kind in ("camera", "assembly") else scored(
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
                           f"yet: materialize models/{family}_champion first")
        return outcome
    if not profile.assets:
        outcome.skipped = (f"{edge_id} ({profile.kind} edge): none of its sources matches a "
                           "camera or machine seen in silver yet")
        return outcome
    outcome.model_version = str(champion.version)
    features_spec = table(families.spec(family).feature_table)
    version = lake.version(features_spec)
    if version is None:
        raise ValueError(f"{features_spec.qualified_name} does not exist yet")
    features = lake.read(features_spec, version)  # pinned: the version we record
    trained_on = {k.removeprefix(DATA_TAG_PREFIX): None if v == "None" else int(v)
                  for k, v in champion.tags.items() if k.startswith(DATA_TAG_PREFIX)}
    with tempfile.TemporaryDirectory(prefix=f"mfg-bundle-{edge_id}-") as tmp_dir:
        tmp = Path(tmp_dir)
        prepare = _PREPARE[families.spec(family).edge_kind or ""]
        prepared = prepare(registry, families.family(family), champion, features, profile,
                           tmp, settings)
        if isinstance(prepared, str):
            outcome.skipped = prepared
            return outcome
        export, preprocessing, threshold, notes = prepared
        recalibration = recalibrate_from_verdicts(lake, edge_id, family, features, export.path,
                                                  preprocessing, threshold)
        if recalibration is not None:
            threshold = {**threshold, "value": recalibration.threshold,
                         "labels": recalibration.as_dict()}
            notes = [*notes, f"threshold from operators' verdicts: {recalibration.reason}"]
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
        outcome.location = bundle_location(store, built.bundle_id)
    known = lake.scan(BUNDLES).filter(pl.col("bundle_id") == outcome.bundle.bundle_id)
    if known.select(pl.len()).collect().item() == 0:
        row = bundle_row(outcome.bundle, store.uri)
        outcome.write = lake.append(BUNDLES, pl.DataFrame([row], schema=BUNDLES.polars_schema),
                                    edge=edge_id)
    return outcome


def bundle_summary(outcome: BundleOutcome) -> dict[str, Any]:
    """What a person wants to know about one edge's bundle build, as plain data (nested
    dicts are JSON documents; ``bundle_location`` is a path)."""
    profile = outcome.profile
    facts: dict[str, Any] = {
        "edge_id": profile.edge_id,
        "edge_kind": profile.kind or "unknown",
        "edge_kind_from": profile.source,
        "scores": ", ".join(profile.assets) or "nothing known",
    }
    if outcome.bundle is None:
        # A skip is not a failure: a line edge waits for the first anomaly champion, and the
        # automation builds its bundle when that champion appears.
        return facts | {"skipped": outcome.skipped or "", "bundle_id": "none"}
    manifest = outcome.bundle.manifest
    model = manifest["model"]
    facts |= {
        "bundle_id": outcome.bundle.bundle_id,
        "new_bundle": outcome.new,
        "model": registered_name(model["name"]),
        "model_version": str(model["version"]),
        "precision": model.get("precision", "fp32"),
        "precision_reason": model.get("reason", ""),
        "threshold": outcome.bundle.threshold,
        "threshold_calibration": dict(outcome.calibration),
        "manifest_checksums": dict(manifest["files"]),
        "lineage": dict(manifest["lineage"]),
        "bundle_location": outcome.location,
    }
    if model.get("quantization_metrics"):
        facts["quantization_metrics"] = dict(model["quantization_metrics"])
    if outcome.notes:
        facts["notes"] = "; ".join(outcome.notes)
    return facts


Prepared = tuple[Any, dict[str, Any], dict[str, Any], list[str]]


def _features_of(profile: EdgeProfile) -> str:
    return families.spec(profile.family or "").feature_table


def _prepare_vision(
    registry: ModelRegistry, module: Any, champion: Any, features: pl.DataFrame,
    profile: EdgeProfile, tmp: Path, settings: BundleSettings,
) -> Prepared | str:
    from mfg_assets.edge.predictor import calibration_scores, image_preprocessing, read_png
    from mfg_assets.fleet.export import QuantCheck, export_model

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
              f"({_features_of(profile)}, up to {last})")
    return export, preprocessing, threshold_entry(scores, settings.quantile, source), []


def recalibrate_from_verdicts(
    lake: Lake, edge_id: str, family: str, features: pl.DataFrame, model_file: Path,
    preprocessing: dict[str, Any], threshold: dict[str, Any],
) -> Any | None:
    """The operators' word at the next bundle: the edge's judged sensor windows (rejected
    flags = normal, confirmed = fault, ``silver.labels``) rescored with the model that will
    ship, and the calibrated threshold raised above labelled false alarms without losing a
    labelled fault (``labeling.recalibrate``). None: not a window model, or no verdicts."""
    from mfg_assets.edge.predictor import calibration_scores
    from mfg_assets.labeling.queue import window_of
    from mfg_assets.labeling.recalibrate import labelled_windows, recalibrate_threshold

    if preprocessing.get("kind") != "sensor_window":
        return None
    predictions, labels = table(SILVER_EDGE_PREDICTIONS), table(SILVER_LABELS)
    if not (lake.exists(predictions) and lake.exists(labels)):
        return None
    judged = labelled_windows(lake.read(predictions), lake.read(labels), edge_id, family)
    keys = [(w[0], w[1], truth) for sid, truth in zip(judged["source_id"], judged["truth"],
                                                      strict=True) if (w := window_of(sid))]
    if not keys:
        return None
    wanted = pl.DataFrame(keys, schema={"machine_id": pl.String, "start_ms": pl.Int64,
                                        "truth": pl.Boolean}, orient="row")
    columns = list(preprocessing["window"]["columns"])
    rows = features.with_columns(
        pl.col("window_start").dt.epoch("ms").alias("start_ms")).join(
        wanted, on=["machine_id", "start_ms"], how="inner")
    if rows.height == 0:
        return None
    x = rows.select(pl.col(c).cast(pl.Float32) if c in rows.columns else
                    pl.lit(None, pl.Float32).alias(c) for c in columns)
    scores = calibration_scores(model_file, preprocessing,
                                x.fill_null(float("nan")).to_numpy().astype(np.float32))
    return recalibrate_threshold(scores, rows["truth"].to_numpy(), float(threshold["value"]))


def _prepare_windows(
    registry: ModelRegistry, module: Any, champion: Any, features: pl.DataFrame,
    profile: EdgeProfile, tmp: Path, settings: BundleSettings,
) -> Prepared | str:
    from mfg_assets.edge.predictor import calibration_scores, window_preprocessing
    from mfg_assets.edge.windows import WindowSpec
    from mfg_assets.fleet.export import QuantCheck, export_model

    model, info = registry.load(module, champion, tmp / "model")
    mine = features.filter(pl.col("machine_id").is_in(list(profile.assets)))
    types = Counter(
        mine.select("machine_id", "machine_type").unique().get_column("machine_type").to_list()
    )
    known = [(n, t) for t, n in types.items() if t in info["machine_types"]]
    if not known:
        return (f"{profile.edge_id}: the {registered_name(profile.family or '')} champion knows "
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
              f"{', '.join(profile.assets)} ({_features_of(profile)})")
    return export, preprocessing, threshold_entry(scores, settings.quantile, source), notes



def export_detection(model: Any, info: dict[str, Any], example: np.ndarray, out: Path
                     ) -> tuple[Any, dict[str, Any]]:
    """A part detector as an edge runs it: the fp32 ONNX graph with its top-K decode inside
    (int8 not tried: the graph ends in its top-K decode) and its detection preprocessing (the
    board's layout, the box score). The edge's bundles and batch scoring
    (``fleet/batch.py``) both export through here. Returns (``ExportResult``,
    preprocessing)."""
    from mfg_assets.edge.predictor import detection_preprocessing
    from mfg_assets.fleet.export import export_model

    export = export_model(model, example, out)
    preprocessing = detection_preprocessing(int(info["image_size"]), list(info["classes"]),
                                            list(info["layout"]), float(info["box_score"]))
    return export, preprocessing


def _prepare_detection(
    registry: ModelRegistry, module: Any, champion: Any, features: pl.DataFrame,
    profile: EdgeProfile, tmp: Path, settings: BundleSettings,
) -> Prepared | str:
    """Part detection: fp32 ONNX with its decode inside; the edge's threshold on the slot
    abnormality of its own most recent complete boards."""
    from mfg_assets.edge.predictor import calibration_scores, read_png

    model, info = registry.load(module, champion, tmp / "model")
    size = int(info["image_size"])
    mine = features.filter(pl.col("camera_id").is_in(list(profile.assets)))
    complete = mine.filter((pl.col("missing") == "[]") | (pl.col("label") == "ok"))
    complete = complete.sort("ts", "image_id").tail(settings.calibration_rows)
    cams = ", ".join(profile.assets)
    if complete.height < 10:
        return (f"{profile.edge_id}: only {complete.height} complete assemblies of {cams} to "
                "calibrate its threshold on (need 10)")
    example = module.decode(complete.get_column("png").head(1).to_list(), size)
    export, preprocessing = export_detection(model, info, example, tmp / "export")
    pixels = [read_png(png) for png in complete.get_column("png").to_list()]
    scores = calibration_scores(export.path, preprocessing, pixels)
    source = (f"{complete.height} most recent complete assemblies of {cams} "
              f"({_features_of(profile)}, up to {complete.get_column('ts').max()})")
    notes = ["fp32: the graph ends in its top-K decode, int8 not tried"]
    return export, preprocessing, threshold_entry(scores, settings.quantile, source), notes


# How a bundle is prepared, per kind of edge (a family's edge_kind in ml/families.py).
_PREPARE: dict[str, Callable[..., Prepared | str]] = {
    "camera": _prepare_vision,
    "assembly": _prepare_detection,
    "line": _prepare_windows,
}
