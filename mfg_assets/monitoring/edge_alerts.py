"""Edge-health alerts: each edge's latest telemetry window scored by the serving champion.

The champion of the ``edge_health`` family (MLflow alias ``champion``) scores the newest
window of every edge (:func:`mfg_assets.ml.edge_health.at_risk`); an edge whose probability
of failing within the model's horizon reaches its threshold gets one alert message
(:func:`mfg_assets.ml.edge_health.alert_messages`). The Dagster check in ``defs/health.py``
turns a non-empty list into a failed WARN check, which the ``failed_checks`` sensor posts.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from mfg_assets.ml import edge_health, families
from mfg_assets.ml.registry import registered_name

if TYPE_CHECKING:
    from mfg_assets.ml.registry import ModelRegistry

FAMILY = "edge_health"


@dataclass(frozen=True)
class EdgeAlerts:
    model_version: str | None  # the champion that scored (None: no champion yet)
    scored: pl.DataFrame  # edge_id, window_end, probability, alarm
    messages: list[dict[str, Any]] = field(default_factory=list)
    horizon_h: float | None = None


def champion_alerts(registry: ModelRegistry, features: pl.DataFrame) -> EdgeAlerts:
    """Score each edge's latest window of ``features`` with the champion; alert messages."""
    champion = registry.champion(registered_name(FAMILY))
    if champion is None:
        return EdgeAlerts(None, pl.DataFrame())
    module = families.family(FAMILY)
    with tempfile.TemporaryDirectory(prefix="mfg-edge-health-") as tmp:
        model, info = registry.load(module, champion, Path(tmp))
    scored = edge_health.at_risk(model, features)
    version = str(champion.version)
    return EdgeAlerts(version, scored,
                      edge_health.alert_messages(scored, info["horizon_h"], version),
                      info["horizon_h"])
