"""The Dagster code location: assembles every asset group, check, job and resource."""

from __future__ import annotations

import dagster as dg

from mfg_assets.defs.alerts import alert_sensors
from mfg_assets.defs.automation import DEPLOYMENT_PRIORITY, PRIORITY_TAG, sensor_interval
from mfg_assets.defs.bronze import bronze_from_replay
from mfg_assets.defs.cost import cost_assets
from mfg_assets.defs.dashboard import dashboard_assets
from mfg_assets.defs.drift import drift_assets, drift_sensors
from mfg_assets.defs.edge import edge_assets, edge_jobs, edge_resources, edge_sensors
from mfg_assets.defs.features import feature_assets
from mfg_assets.defs.health import health_checks
from mfg_assets.defs.maintenance import maintenance_assets
from mfg_assets.defs.models import model_assets, model_resources
from mfg_assets.defs.monitoring import monitoring_assets
from mfg_assets.defs.predictions import prediction_assets
from mfg_assets.defs.resources import default_resources
from mfg_assets.defs.sensors import bronze_delta_versions
from mfg_assets.defs.silver import fault_labels, silver_assets
from mfg_assets.plan import plan_jobs
from mfg_assets.settings import get_settings

ALL_ASSETS = [
    bronze_from_replay, *silver_assets, fault_labels, *feature_assets, *model_assets,
    *edge_assets, *monitoring_assets,
    *maintenance_assets, *cost_assets, *dashboard_assets,
    *drift_assets, *prediction_assets,
]

ingest_replay_job = dg.define_asset_job(
    "ingest_replay",
    selection=dg.AssetSelection.groups("bronze"),
    description="Load new UNS replay files into bronze.",
)

# Running by default: `make dev` must follow new data without anyone flipping a switch.
DEPLOYMENT = dg.AssetSelection.groups("edge")
automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation",
    target=dg.AssetSelection.all() - DEPLOYMENT,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=sensor_interval(30),
)
# Bundles and rollouts evaluated by a sensor of their own, so that their runs carry a queue
# priority: on a busy box they go ahead of the routine silver and feature refreshes (a new
# champion waits to reach the line), behind drift retrains (priority 10-20). Measured in the
# closed loop on two cores: bundle runs queued 30-70 s behind routine runs without it.
# One run per edge, not a backfill: the backfill daemon launched the bundles of a new
# champion one daemon pass (10 s) later, and rollouts wait for them.
deployment_automation_sensor = dg.AutomationConditionSensorDefinition(
    "deployment_automation",
    target=DEPLOYMENT,
    run_tags={PRIORITY_TAG: DEPLOYMENT_PRIORITY},
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=sensor_interval(30),
    emit_backfills=False,
)

# One process per step (Dagster's default) isolates steps; on a small box each step then pays
# an interpreter start. MFG_RUN_EXECUTOR=in_process runs a run's steps in its one process
# (settings.py validates the name).
_EXECUTORS = {"": None, "multiprocess": None, "in_process": dg.in_process_executor}

defs = dg.Definitions(
    assets=ALL_ASSETS,
    asset_checks=health_checks,
    jobs=[ingest_replay_job, *edge_jobs, *plan_jobs()],  # plan_jobs: demo_<step>
    sensors=[automation_sensor, deployment_automation_sensor, bronze_delta_versions,
             *edge_sensors, *drift_sensors,
             *alert_sensors],
    resources={**default_resources(), **model_resources(), **edge_resources()},
    executor=_EXECUTORS[get_settings().automation.run_executor],
)
