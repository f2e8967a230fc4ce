"""A model-training run in a process of its own, for the resumable-training test.

``python -m mfg_assets_tests.ml.resumable_run fresh`` runs the ``models/sensor_anomaly``
challenger (the production asset, its blocking gate included) as a job on the instance
``DAGSTER_HOME`` points at; ``... retry RUN_ID`` re-executes a failed run from its failure,
as the run-retry daemon does (``ReexecutionOptions.from_failure``, its retry-number tag).
Settings (lakehouse, MLflow) come from ``MFG_DATA_DIR``.
"""

from __future__ import annotations

import sys

import dagster as dg
from dagster._core.storage.tags import RETRY_NUMBER_TAG

from mfg_assets.defs.models import challenger_asset, model_key, model_resources
from mfg_assets.defs.resources import default_resources
from mfg_assets.ml import anomaly
from mfg_assets.ml.families import FAMILIES

FAMILY = "sensor_anomaly"
JOB = "train_sensor_anomaly"
# Twice the default 120 epochs: on the test's small table an epoch takes a few ms, and the
# fixed work of a training run (baselines, evaluation, MLflow) hid what a resume saves
# (0.2-0.4 of ~7 CPU s at 120; 600 overfits and the gate refuses). Set in main() only.
EPOCHS = 240
RUN_CONFIG = {"ops": {model_key(FAMILY).to_python_identifier(): {"config": {"budget": 1}}}}

defs = dg.Definitions(
    assets=[challenger_asset(FAMILIES[FAMILY])],
    jobs=[dg.define_asset_job(JOB, selection=[model_key(FAMILY)],
                              executor_def=dg.in_process_executor)],
    resources={**default_resources(), **model_resources()},
)


def train_job() -> dg.JobDefinition:
    return defs.resolve_job_def(JOB)


def main(argv: list[str]) -> int:
    anomaly.DEFAULT_PARAMS["epochs"] = EPOCHS  # this process only (in-process executor)
    instance = dg.DagsterInstance.get()
    job = dg.reconstructable(train_job)
    if argv[0] == "fresh":
        result = dg.execute_job(job, instance, run_config=RUN_CONFIG, raise_on_error=False)
    else:
        options = dg.ReexecutionOptions.from_failure(argv[1], instance)
        result = dg.execute_job(job, instance, reexecution_options=options,
                                tags={RETRY_NUMBER_TAG: "1"}, raise_on_error=False)
    print(f"RUN {result.run_id} {'SUCCESS' if result.success else 'FAILURE'}", flush=True)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
