"""Edge health alerts: a WARN check on the edge telemetry features, posted by ``failed_checks``.

``edges_at_risk`` scores each edge's latest window with the ``edge_health`` champion every
time ``features/edge_telemetry`` is rebuilt (or the champion changes); an edge likely to fail
within the model's horizon fails the check with severity WARN, its alert messages in the
metadata, and the ``failed_checks`` sensor (``defs/alerts.py``) posts them where every other
alert goes. The policy is plain Python in ``mfg_assets.monitoring.edge_alerts``.
"""

import dagster as dg

from mfg_assets.defs.features import feature_key
from mfg_assets.defs.models import MlflowResource, champion_key
from mfg_assets.defs.resources import LakehouseResource
from mfg_assets.lake.names import FEATURES_EDGE_TELEMETRY
from mfg_assets.lake.registry import table
from mfg_assets.monitoring.edge_alerts import FAMILY, champion_alerts

FEATURES = FEATURES_EDGE_TELEMETRY
CHECK = "edges_at_risk"


@dg.asset_check(
    asset=feature_key(FEATURES),
    name=CHECK,
    additional_deps=[champion_key(FAMILY)],
    description="Edges whose latest telemetry window the edge_health champion scores as "
    "likely to fail within its horizon (WARN, one alert message per edge in the metadata).",
    automation_condition=dg.AutomationCondition.any_deps_updated(),
)
def edges_at_risk(lakehouse: LakehouseResource, mlflow: MlflowResource) -> dg.AssetCheckResult:
    lake = lakehouse.lake()
    source = table(FEATURES)
    version = lake.version(source)
    if version is None:
        return dg.AssetCheckResult(passed=True, metadata={"note": f"{FEATURES} not built yet"})
    alerts = champion_alerts(mlflow.registry(), lake.read(source, version))
    at_risk = [m["edge_id"] for m in alerts.messages]
    return dg.AssetCheckResult(
        passed=not at_risk,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(m["text"] for m in alerts.messages) or None,
        metadata={
            "edges_at_risk": dg.MetadataValue.json(at_risk),
            "alerts": dg.MetadataValue.json(alerts.messages),
            "edges_scored": alerts.scored.height,
            "champion_version": alerts.model_version or "none",
            "horizon_h": alerts.horizon_h if alerts.horizon_h is not None else float("nan"),
            "delta_version": version,
        },
    )


health_checks = [edges_at_risk]
