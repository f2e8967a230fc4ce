"""The model families by name, imported on first use (torch and Prophet load slowly)."""

from __future__ import annotations

import importlib
from types import ModuleType

MODULES = {
    "sensor_anomaly": "mfg_assets.ml.anomaly",
    "failure_forecast": "mfg_assets.ml.forecast",
    "process_yield": "mfg_assets.ml.yield_model",
    "vision_defect": "mfg_assets.ml.vision",
}


def family(name: str) -> ModuleType:
    """The module of family ``name`` (FAMILY, FEATURE_TABLE, search_space, train, ...)."""
    try:
        return importlib.import_module(MODULES[name])
    except KeyError:
        raise KeyError(f"unknown model family {name!r}; known: {', '.join(MODULES)}") from None
