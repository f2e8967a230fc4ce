"""Resumable training in Dagster: the checkpoint scope of a model asset's run.

A retried run (``run_retries`` in ``dagster.yaml``, FROM_FAILURE) of the same asset,
partition, input Delta versions and config finds the checkpoints the failed or preempted
run left in MLflow and resumes its training loops there (``mfg_assets.ml.checkpoint``).
The resume is logged and recorded as the run tag ``mfg/resumed_from`` (unit -> epoch).
"""

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import dagster as dg

from mfg_assets.ml.checkpoint import EXPERIMENT, Scope, mlflow_scope, resume_key
from mfg_assets.ml.registry import ModelRegistry

RESUMED_TAG = "mfg/resumed_from"


@contextmanager
def training_checkpoints(context: dg.AssetExecutionContext, registry: ModelRegistry,
                         data_versions: Mapping[str, int | None],
                         config: dg.Config) -> Iterator[Scope]:
    """The checkpoint scope of this asset's training: keyed by asset, partition, the Delta
    versions trained on, the run config and the asset's code version."""
    asset = context.asset_key
    partition = context.partition_key if context.has_partition_key else None
    code_version = context.assets_def.code_versions_by_key.get(asset)
    key = resume_key(asset.to_user_string(), partition, data_versions,
                     {**config.model_dump(), "code_version": code_version})
    tags = {"dagster.run_id": context.run.run_id, "mfg.asset": asset.to_user_string()}
    # under the registry's artifact root: MLflow's own default is ./mlruns of the cwd
    with mlflow_scope(registry.client, key, tags,
                      artifact_location=registry.artifact_location(EXPERIMENT)) as scope:
        try:
            yield scope
        finally:
            if scope.resumed:
                context.log.info(f"resumed training from checkpoints (unit: epoch): "
                                 f"{json.dumps(scope.resumed, sort_keys=True)}")
                context.instance.add_run_tags(
                    context.run.run_id, {RESUMED_TAG: json.dumps(scope.resumed, sort_keys=True)})
