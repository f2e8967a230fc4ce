"""Features: model-ready Delta tables built from silver by the plain builders in ml/features.

Each feature table (the registry is :data:`mfg_assets.ml.features.FEATURE_SETS`) reads whole
silver tables at pinned Delta versions and records them in its own Delta commit
(:mod:`mfg_assets.lake.lineage`) and in the materialization metadata, so a model that
records the feature version it trained on can be traced back to the exact silver versions
behind it.
"""


import dagster as dg
import polars as pl

from mfg_assets.defs.automation import FEATURES_FRESHNESS, rebuild_on_upstream_change
from mfg_assets.defs.cost import with_cost
from mfg_assets.defs.metadata import table_metadata
from mfg_assets.defs.resources import LakehouseResource
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import table
from mfg_assets.ml import features as fb
from mfg_assets.ml.features import FEATURE_SETS, FeatureSet

OWNER = "team:ml-engineering"


def feature_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(table(name).asset_key_path)


def build_feature_table(lake: Lake, feature_set: FeatureSet) -> tuple[dict, pl.DataFrame]:
    """Build and write the feature table (:func:`mfg_assets.ml.features.build_feature_set`);
    returns the materialization metadata and the written frame."""
    built = fb.build_feature_set(lake, feature_set)
    meta = table_metadata(lake, table(feature_set.table), built.write)
    meta["silver_versions_read"] = dg.MetadataValue.json(built.versions)
    meta["columns"] = len(built.frame.columns)
    return meta, built.frame


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
