"""The code location loads, and every asset spec says what DESIGN.md asks of it."""

import json

import dagster as dg

from mfg_assets.definitions import defs

LAYERS = {"bronze", "silver", "features", "models", "edge", "monitoring", "predictions"}


def test_definitions_load_and_validate():
    dg.Definitions.validate_loadable(defs)


def test_every_asset_has_layer_key_group_kinds_owner_and_description():
    specs = list(defs.resolve_all_asset_specs())
    assert len(specs) >= 16
    for spec in specs:
        layer = spec.key.path[0]
        assert len(spec.key.path) == 2 and layer in LAYERS, spec.key
        assert spec.group_name == layer, spec.key
        # tables are Delta; models live in MLflow
        assert spec.kinds and ("mlflow" if layer == "models" else "delta") in spec.kinds, spec.key
        assert spec.owners, spec.key
        assert spec.description and len(spec.description) > 20, spec.key


def test_snapshot_of_asset_graph():
    """Changing the graph is a deliberate act: update this snapshot with the change."""
    graph = {
        spec.key.to_user_string(): sorted(dep.asset_key.to_user_string() for dep in spec.deps)
        for spec in defs.resolve_all_asset_specs()
    }
    assert graph == {
        "bronze/sensor_readings": [],
        "bronze/process_runs": [],
        "bronze/inspection_images": [],
        "bronze/image_boxes": [],
        "bronze/edge_telemetry": [],
        "bronze/edge_predictions": [],
        "bronze/feedback": [],
        "bronze/device_events": [],
        "bronze/quarantine": [],
        "bronze/ingest_batches": [],
        "bronze/ground_truth": [],
        "silver/sensor_readings": ["bronze/sensor_readings"],
        "silver/process_runs": ["bronze/process_runs"],
        "silver/process_parameters": ["bronze/process_runs"],
        "silver/inspection_images": ["bronze/inspection_images"],
        "silver/image_boxes": ["bronze/image_boxes"],
        "silver/edge_telemetry": ["bronze/edge_telemetry"],
        "silver/edge_predictions": ["bronze/edge_predictions"],
        "silver/labels": ["bronze/feedback"],
        "silver/fault_labels": ["bronze/ground_truth"],
        "features/sensor_windows": ["silver/fault_labels", "silver/sensor_readings"],
        "features/process_units": ["silver/process_parameters", "silver/process_runs"],
        "features/image_dataset": ["silver/inspection_images"],
        "features/assembly_images": ["silver/image_boxes", "silver/inspection_images"],
        "features/edge_telemetry": ["silver/edge_telemetry", "silver/fault_labels"],
        "models/sensor_anomaly": ["features/sensor_windows"],
        "models/failure_forecast": ["features/sensor_windows"],
        "models/process_yield": ["features/process_units"],
        "models/vision_defect": ["features/image_dataset"],
        "models/edge_health": ["features/edge_telemetry"],
        "models/part_detection": ["features/assembly_images"],
        "models/sensor_anomaly_champion": ["models/sensor_anomaly"],
        "models/failure_forecast_champion": ["models/failure_forecast"],
        "models/process_yield_champion": ["models/process_yield"],
        "models/vision_defect_champion": ["models/vision_defect"],
        "models/edge_health_champion": ["models/edge_health"],
        "models/part_detection_champion": ["models/part_detection"],
        "edge/bundles": [
            "features/assembly_images",
            "features/image_dataset",
            "features/sensor_windows",
            "models/part_detection_champion",
            "models/sensor_anomaly_champion",
            "models/vision_defect_champion",
            "silver/edge_telemetry",
        ],
        "edge/rollouts": [
            "edge/bundles", "silver/edge_predictions", "silver/inspection_images"
        ],
        "monitoring/inspection_stats": [
            "edge/rollouts", "silver/edge_predictions", "silver/inspection_images"
        ],
        "monitoring/drift": [
            "features/assembly_images",
            "features/edge_telemetry", "features/image_dataset", "features/process_units",
            "features/sensor_windows",
            "silver/edge_predictions", "silver/inspection_images",
        ],
        "monitoring/cost": ["silver/edge_predictions", "silver/inspection_images"],
        "monitoring/dashboard": [
            "bronze/quarantine", "edge/rollouts", "monitoring/cost", "monitoring/drift",
            "monitoring/inspection_stats",
        ],
        "monitoring/lake_maintenance": [],
        "predictions/part_detection": [
            "features/assembly_images", "models/part_detection_champion",
            "silver/edge_predictions",
        ],
        "predictions/sensor_anomaly": [
            "features/sensor_windows", "models/sensor_anomaly_champion",
            "silver/edge_predictions",
        ],
        "predictions/vision_defect": [
            "features/image_dataset", "models/vision_defect_champion", "silver/edge_predictions",
        ],
    }


def test_silver_assets_are_daily_partitioned_with_blocking_checks():
    checks = {
        (key.asset_key.to_user_string(), key.name)
        for key in defs.resolve_asset_graph().asset_check_keys
    }
    assert ("silver/sensor_readings", "schema") in checks
    assert ("silver/sensor_readings", "unique_key") in checks
    assert ("silver/process_runs", "quarantine_share") in checks


def test_every_challenger_has_a_blocking_promotion_gate():
    graph = defs.resolve_asset_graph()
    gates = {
        key.asset_key.to_user_string(): graph.get_check_spec(key).blocking
        for key in graph.asset_check_keys
        if key.name == "beats_champion"
    }
    assert gates == {
        f"models/{family}": True
        for family in ("sensor_anomaly", "failure_forecast", "process_yield", "vision_defect",
                       "edge_health", "part_detection")
    }


AWS = {"AWS_ACCESS_KEY_ID": "AKID-not-for-the-ui", "AWS_SECRET_ACCESS_KEY": "secret-not-for-the-ui",
       "AWS_REGION": "us-east-1"}


def _code_location(monkeypatch, env: dict[str, str]):
    """The code location built the way production builds it (module import) under ``env``;
    the module is rebuilt with the test's environment undone afterwards."""
    import importlib

    import mfg_assets.definitions as location

    for name in (*AWS, "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        return importlib.reload(location).defs
    finally:
        monkeypatch.undo()
        importlib.reload(location)


def _lakehouse_snapshot(defs: dg.Definitions):
    from dagster._core.remote_representation.external_data import RepositorySnap

    snap = RepositorySnap.from_def(defs.get_repository_def(), defer_snapshots=True)
    [lakehouse] = [r for r in snap.resources if r.name == "lakehouse"]
    return snap, lakehouse


def test_s3_secrets_reach_the_ui_as_variable_names_never_values(monkeypatch):
    from dagster._core.remote_representation.external_data import ResourceConfigEnvVarSnap
    from dagster_shared.serdes import serialize_value

    defs = _code_location(monkeypatch, {**AWS, "MFG_LAKE_URI": "s3://lake/root"})
    snap, lakehouse = _lakehouse_snapshot(defs)
    values = lakehouse.configured_values
    assert values["aws_secret_access_key"] == ResourceConfigEnvVarSnap(name="AWS_SECRET_ACCESS_KEY")
    assert values["aws_access_key_id"] == ResourceConfigEnvVarSnap(name="AWS_ACCESS_KEY_ID")
    assert "AWS_SECRET_ACCESS_KEY" in snap.utilized_env_vars
    # nothing the UI receives holds a secret value; the region is plain configuration
    text = serialize_value(snap)
    assert "secret-not-for-the-ui" not in text and "AKID-not-for-the-ui" not in text
    assert "us-east-1" in text


def test_the_embedded_default_binds_no_variable(monkeypatch, data_dir):
    """An unset EnvVar fails a run at resource initialisation: the local lakehouse binds none."""
    from dagster._core.remote_representation.external_data import ResourceConfigEnvVarSnap

    defs = _code_location(monkeypatch, {"MFG_DATA_DIR": str(data_dir)})
    snap, lakehouse = _lakehouse_snapshot(defs)
    assert json.loads(lakehouse.configured_values["root"]) == str(data_dir / "lake")
    assert not [v for v in lakehouse.configured_values.values()
                if isinstance(v, ResourceConfigEnvVarSnap)]
    assert not {k for k in snap.utilized_env_vars or {} if k.startswith("AWS_")}


def test_a_bound_secret_is_read_when_the_run_starts(monkeypatch):
    from mfg_assets.defs.resources import LakehouseResource, default_resources

    for name, value in AWS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MFG_LAKE_URI", "s3://lake/root")
    resources = default_resources()

    @dg.asset
    def options(lakehouse: LakehouseResource) -> dict:
        return lakehouse.lake().storage_options

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "rotated")  # read at run start, not before
    result = dg.materialize([options], resources=resources)
    assert result.output_for_node("options") == {
        "aws_access_key_id": AWS["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": "rotated",
        "aws_region": "us-east-1"}
