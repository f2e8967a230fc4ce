"""Features: model-ready Delta tables built from silver by the plain builders in ml/features.

Each feature table reads whole silver tables at pinned Delta versions and records them in
its own Delta commit (``mfg.read.<table>`` in the commit metadata) and in the
materialization metadata, so a model that records the feature version it trained on can be
traced back to the exact silver versions behind it.
"""


from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
import polars as pl

from mfg_assets.defs.automation import FEATURES_FRESHNESS, rebuild_on_upstream_change
from mfg_assets.defs.cost import with_cost
from mfg_assets.defs.metadata import table_metadata
from mfg_assets.defs.resources import LakehouseResource
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.names import (
    FEATURES_ASSEMBLY_IMAGES,
    FEATURES_EDGE_TELEMETRY,
    FEATURES_IMAGE_DATASET,
    FEATURES_PROCESS_UNITS,
    FEATURES_SENSOR_WINDOWS,
    SILVER_EDGE_TELEMETRY,
    SILVER_FAULT_LABELS,
    SILVER_IMAGE_BOXES,
    SILVER_INSPECTION_IMAGES,
    SILVER_PROCESS_PARAMETERS,
    SILVER_PROCESS_RUNS,
    SILVER_SENSOR_READINGS,
)
from mfg_assets.lake.registry import TableSpec, table
from mfg_assets.ml import features as fb

OWNER = "team:ml-engineering"
READ_PREFIX = "mfg.read."  # commit metadata key prefix: mfg.read.<silver table> = version


@dataclass(frozen=True)
class FeatureSet:
    table: str  # the feature table (layer.name) in the lake registry
    inputs: tuple[str, ...]  # silver tables, in the builder's argument order
    build: Callable[..., pl.DataFrame]
    description: str


FEATURE_SETS = (
    FeatureSet(
        FEATURES_SENSOR_WINDOWS,
        (SILVER_SENSOR_READINGS, SILVER_FAULT_LABELS),
        fb.sensor_windows,
        "Per machine and 10-minute window: statistics and spectrum of every sensor, with the "
        "ground-truth fault label. Input of the anomaly model.",
    ),
    FeatureSet(
        FEATURES_PROCESS_UNITS,
        (SILVER_PROCESS_RUNS, SILVER_PROCESS_PARAMETERS),
        fb.process_units,
        "One row per produced unit: its process parameters (point in time) and measured "
        "yield. Input of the yield model.",
    ),
    FeatureSet(
        FEATURES_IMAGE_DATASET,
        (SILVER_INSPECTION_IMAGES,),
        fb.image_dataset,
        "Labelled inspection images with a deterministic, time-ordered train/validation/"
        "test split per camera. Input of the vision model.",
    ),
    FeatureSet(
        FEATURES_ASSEMBLY_IMAGES,
        (SILVER_INSPECTION_IMAGES, SILVER_IMAGE_BOXES),
        fb.assembly_images,
        "Assembly images with their imported part boxes and a time-ordered split per "
        "camera. Input of the part detection model.",
    ),
    FeatureSet(
        FEATURES_EDGE_TELEMETRY,
        (SILVER_EDGE_TELEMETRY, SILVER_FAULT_LABELS),
        fb.edge_telemetry,
        "Per edge device and 10-minute window: heartbeats, CPU, memory and temperature, "
        "trends, log problems and log-template counts, firmware and bundle, with the time to "
        "the device's next ground-truth failure. Input of the edge_health model.",
    ),
)


def feature_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(table(name).asset_key_path)


def build_feature_table(lake: Lake, feature_set: FeatureSet) -> tuple[dict, pl.DataFrame]:
    """Read the inputs at pinned versions, build, overwrite the feature table.

    Returns the materialization metadata and the written frame (plain function: the Dagster
    asset below only wraps it).
    """
    versions: dict[str, int | None] = {}
    frames = []
    for name in feature_set.inputs:
        spec = table(name)
        versions[name] = lake.version(spec)
        frames.append(lake.read(spec, versions[name]))
    frame = feature_set.build(*frames)
    spec = table(feature_set.table)
    commit = {f"{READ_PREFIX}{name}": str(v) for name, v in versions.items()}
    write = lake.overwrite(spec, frame, **commit)
    meta = table_metadata(lake, spec, write)
    meta["silver_versions_read"] = dg.MetadataValue.json(versions)
    meta["columns"] = len(frame.columns)
    return meta, frame


def read_lineage(lake: Lake, spec: TableSpec, version: int) -> dict[str, int | None]:
    """The input versions a feature table's commit ``version`` was built from."""
    for commit in lake.table(spec).history(limit=100):
        if int(commit["version"]) == version:
            return {
                key.removeprefix(READ_PREFIX): None if value == "None" else int(value)
                for key, value in commit.items()
                if key.startswith(READ_PREFIX)
            }
    return {}


def feature_asset(feature_set: FeatureSet) -> dg.AssetsDefinition:
    spec = table(feature_set.table)

    @dg.asset(
        key=dg.AssetKey(spec.asset_key_path),
        deps=[dg.AssetKey(table(name).asset_key_path) for name in feature_set.inputs],
        group_name="features",
        kinds={"delta", "polars"},
        owners=[OWNER],
        description=feature_set.description,
        metadata={"dagster/table_name": feature_set.table},
        automation_condition=rebuild_on_upstream_change(),
        freshness_policy=FEATURES_FRESHNESS,
    )
    @with_cost  # cost/* metadata (mfg_assets.defs.cost)
    def _features(lakehouse: LakehouseResource) -> dg.MaterializeResult:
        lake = lakehouse.lake()
        meta, _ = build_feature_table(lake, feature_set)
        return dg.MaterializeResult(
            metadata=meta, data_version=dg.DataVersion(str(lake.version(spec)))
        )

    return _features


feature_assets = [feature_asset(fs) for fs in FEATURE_SETS]
