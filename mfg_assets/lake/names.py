"""Every lakehouse table's qualified name (``layer.name``), spelled once.

Code names a table by these constants, never by a string literal: a typo is an import error,
and a renamed table is one edit here. The registry (:mod:`mfg_assets.lake.registry`) declares
its tables with them. Dependency-free on purpose: the edge runtime may import it.
"""

from __future__ import annotations

# bronze
BRONZE_SENSOR_READINGS = "bronze.sensor_readings"
BRONZE_PROCESS_RUNS = "bronze.process_runs"
BRONZE_INSPECTION_IMAGES = "bronze.inspection_images"
BRONZE_IMAGE_BOXES = "bronze.image_boxes"
BRONZE_EDGE_TELEMETRY = "bronze.edge_telemetry"
BRONZE_EDGE_PREDICTIONS = "bronze.edge_predictions"
BRONZE_FEEDBACK = "bronze.feedback"
BRONZE_DEVICE_EVENTS = "bronze.device_events"
BRONZE_QUARANTINE = "bronze.quarantine"
BRONZE_INGEST_BATCHES = "bronze.ingest_batches"
BRONZE_VALIDATION_RESULTS = "bronze.validation_results"
BRONZE_GROUND_TRUTH = "bronze.ground_truth"

# silver
SILVER_SENSOR_READINGS = "silver.sensor_readings"
SILVER_PROCESS_RUNS = "silver.process_runs"
SILVER_PROCESS_PARAMETERS = "silver.process_parameters"
SILVER_INSPECTION_IMAGES = "silver.inspection_images"
SILVER_IMAGE_BOXES = "silver.image_boxes"
SILVER_EDGE_TELEMETRY = "silver.edge_telemetry"
SILVER_EDGE_PREDICTIONS = "silver.edge_predictions"
SILVER_LABELS = "silver.labels"
SILVER_QUARANTINE = "silver.quarantine"
SILVER_FAULT_LABELS = "silver.fault_labels"

# features
FEATURES_SENSOR_WINDOWS = "features.sensor_windows"
FEATURES_PROCESS_UNITS = "features.process_units"
FEATURES_IMAGE_DATASET = "features.image_dataset"
FEATURES_ASSEMBLY_IMAGES = "features.assembly_images"
FEATURES_EDGE_TELEMETRY = "features.edge_telemetry"

# edge
EDGE_BUNDLES = "edge.bundles"
EDGE_ROLLOUTS = "edge.rollouts"

# monitoring
MONITORING_INSPECTION_STATS = "monitoring.inspection_stats"
MONITORING_COST = "monitoring.cost"
MONITORING_DRIFT = "monitoring.drift"
MONITORING_LAKE_MAINTENANCE = "monitoring.lake_maintenance"

# predictions: batch re-scoring, one table per ONNX-exportable family (fleet/batch.py)
PREDICTIONS_PART_DETECTION = "predictions.part_detection"
PREDICTIONS_SENSOR_ANOMALY = "predictions.sensor_anomaly"
PREDICTIONS_VISION_DEFECT = "predictions.vision_defect"
