"""Predictions: a model version re-scores each day of its family's feature table.

Dagster wiring only, over ``fleet.batch``: ``predictions/<family>`` (daily partitions from
the settings' partition start) scores its days with the family's champion, or the version
chosen in the run config, through the edge's ONNX session. A backfill of any date range from
the UI is ONE run (``BackfillPolicy.single_run``): the range is read and committed in spans of
whole days of at most 200k feature rows (one read and one commit when it fits one span), so
memory depends on the span, not the range; each day is replaced once. Staleness: each
partition depends on ``models/<family>_champion``, whose data version is the champion's
model version, so a new champion shows every scored day as stale (upstream data version
changed) until it is backfilled; the latest day is re-scored automatically.
"""

import dagster as dg
from pydantic import Field

from mfg_assets.defs.automation import rescore_latest_on_new_champion
from mfg_assets.defs.cost import with_cost
from mfg_assets.defs.features import OWNER, feature_key
from mfg_assets.defs.metadata import as_metadata, table_metadata
from mfg_assets.defs.models import MlflowResource, champion_key
from mfg_assets.defs.partitions import daily
from mfg_assets.defs.resources import LakehouseResource
from mfg_assets.fleet import batch
from mfg_assets.lake.registry import table
from mfg_assets.ml.families import spec


class PredictionConfig(dg.Config):
    model_version: str = Field(default="", description="Model version to score with (empty: "
                               "the champion at run time).")
    threshold: float | None = Field(default=None, description="Decision threshold on the "
                                    "score (empty: the model's own).")
    batch_size: int = Field(default=512, ge=1, description="Rows per onnxruntime call.")
    decode_threads: int = Field(default=batch.DEFAULT_DECODE_THREADS, ge=1,
                                description="Threads decoding PNGs ahead of the model.")
    onnx_threads: int = Field(default=1, ge=1, description="onnxruntime intra-op threads.")


def prediction_key(family: str) -> dg.AssetKey:
    return dg.AssetKey(batch.predictions_table(family).asset_key_path)


def prediction_asset(family: str) -> dg.AssetsDefinition:
    entry = spec(family)
    target = batch.predictions_table(family)
    edge_predictions = dg.AssetKey(table(batch.EDGE_PREDICTIONS).asset_key_path)

    @dg.asset(
        key=prediction_key(family),
        partitions_def=daily,
        # a backfill of N days is one run, read and committed in bounded spans of days
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[
            champion_key(family),
            feature_key(entry.feature_table),
            # a window closing at midnight is published by its edge the next day
            dg.AssetDep(edge_predictions,
                        partition_mapping=dg.TimeWindowPartitionMapping(end_offset=1)),
        ],
        group_name="predictions",
        kinds={"onnx", "delta"},
        owners=[OWNER],
        description=target.description + " Backfill a date range to re-score the past.",
        metadata={"dagster/table_name": target.qualified_name},
        automation_condition=rescore_latest_on_new_champion(champion_key(family)),
    )
    @with_cost  # cost/* metadata (mfg_assets.defs.cost)
    def _predictions(
        context: dg.AssetExecutionContext,
        config: PredictionConfig,
        lakehouse: LakehouseResource,
        mlflow: MlflowResource,
    ) -> dg.MaterializeResult:
        lake = lakehouse.lake()
        try:
            model = batch.exported_model(mlflow.registry(), family, config.model_version)
            outcome = batch.predict_days(
                lake, model, context.partition_keys, batch_size=config.batch_size,
                threshold=config.threshold, decode_threads=config.decode_threads,
                onnx_threads=config.onnx_threads, run_id=context.run.run_id)
        except ValueError as exc:  # no champion, unknown version: say which
            keys = context.partition_keys
            raise dg.Failure(f"{family} {keys[0]}..{keys[-1]}: {exc}") from exc
        meta = as_metadata(batch.summary(outcome)) | table_metadata(lake, target, outcome.write)
        meta["onnx_from_cache"] = model.cached
        return dg.MaterializeResult(
            metadata=meta,
            data_version=dg.DataVersion(
                f"{model.model_name}/{model.version}@{outcome.features_version}"),
        )

    return _predictions


prediction_assets = [prediction_asset(f) for f in batch.batch_families()]
