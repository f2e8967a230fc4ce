"""THE model-family registry: each family declared once, everything else reads it.

An entry says what a family is without importing its module (torch and Prophet load
slowly): the module with its training code, the feature table it trains on, what drift
compares for it, its primary and quiet metrics with their floors (``ModelFamily``), how
urgently a drift retrain runs, and the kind of edge that serves it (``None``: not served
on an edge). Assets, drift, bundles, retrain priorities and the demo all read this table;
adding a family is one entry here plus one module under ``mfg_assets/ml/``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from mfg_assets.lake.names import (
    FEATURES_ASSEMBLY_IMAGES,
    FEATURES_EDGE_TELEMETRY,
    FEATURES_IMAGE_DATASET,
    FEATURES_PROCESS_UNITS,
    FEATURES_SENSOR_WINDOWS,
)
from mfg_assets.ml.base import ModelFamily

# Priority of a drift retrain of a family that no edge serves (edge-served ones go first:
# their drift is what the line sees).
ROUTINE_RETRAIN_PRIORITY = 10
EDGE_RETRAIN_PRIORITY = 20


@dataclass(frozen=True)
class DriftInputs:
    """What drift compares for a family: its feature table, time column, segment, columns."""

    table: str
    ts: str
    segment: str | None
    kind: str  # "sensor", "process" or "image": how the input columns are found
    target: str | None = None  # the label a regressor predicts (error drift needs it)
    # exogenous covariates that drift with the time of day, not with the process
    ignore: tuple[str, ...] = ()


@dataclass(frozen=True)
class FamilySpec:
    model: ModelFamily  # name, primary/quiet metrics, floors, flavor
    module: str  # mfg_assets.ml.<module>: search_space, train, evaluate, save, load
    feature_table: str  # registered lake table it trains on
    drift: DriftInputs
    kinds: frozenset[str]  # Dagster asset kinds
    description: str  # for a person reading the catalog
    edge_kind: str | None = None  # the kind of edge that serves it ("line", "camera")
    retrain_priority: int = ROUTINE_RETRAIN_PRIORITY

    @property
    def name(self) -> str:
        return self.model.name


_SENSOR_WINDOWS = FEATURES_SENSOR_WINDOWS
_PROCESS_UNITS = FEATURES_PROCESS_UNITS
_IMAGE_DATASET = FEATURES_IMAGE_DATASET
_EDGE_TELEMETRY = FEATURES_EDGE_TELEMETRY
_ASSEMBLY_IMAGES = FEATURES_ASSEMBLY_IMAGES

_ENTRIES = (
    FamilySpec(
        model=ModelFamily(
            name="sensor_anomaly",
            primary_metric="f1",
            higher_is_better=True,
            # No constant floor: what F1 a plant's labels allow depends on its faults (the
            # first hours of a degradation are labelled faulty but barely move the sensors,
            # see ml/anomaly.py). The model must beat a per-machine z-score of the same
            # windows, thresholded as it is, on F1 and AUROC; a plant adds floors in
            # MFG_MODEL_GATES. A logistic regression on the labels is measured and shown,
            # not raced: the autoencoder learns without fault labels (most plants have
            # none), the logistic one needs them; where it wins, a supervised model would
            # serve that plant better, and its numbers say so.
            floors={},
            flavor="pytorch",
            quiet_metric="false_alarm_rate",
            baseline_metrics=("f1", "auroc"),
            gate_baselines=("zscore",),
        ),
        module="mfg_assets.ml.anomaly",
        feature_table=_SENSOR_WINDOWS,
        drift=DriftInputs(_SENSOR_WINDOWS, "window_start", "machine_id", "sensor"),
        kinds=frozenset({"pytorch", "mlflow"}),
        description="Sensor anomaly detector (autoencoder on sensor windows): flags windows "
        "whose reconstruction error exceeds a threshold tuned on validation data.",
        edge_kind="line",
        retrain_priority=EDGE_RETRAIN_PRIORITY,
    ),
    FamilySpec(
        model=ModelFamily(
            name="failure_forecast",
            primary_metric="smape",
            higher_is_better=False,
            # No constant sMAPE ceiling: how well a plant's signals can be forecast depends
            # on them. Prophet must have a lower sMAPE than the last known value, the known
            # mean and the value a day earlier on the same held-out points. Coverage stays
            # a sanity floor because its meaning is calibrated, not plant-specific: the
            # share of held-out points inside the nominal 90 % interval (interval_width);
            # below 60 % the interval (and hours_to_limit_upper) is overconfident on any
            # plant. A plant that changes interval_width sets its floor in MFG_MODEL_GATES.
            floors={"coverage": 0.6},
            flavor="prophet",
            baseline_metrics=("smape",),
        ),
        module="mfg_assets.ml.forecast",
        feature_table=_SENSOR_WINDOWS,
        drift=DriftInputs(_SENSOR_WINDOWS, "window_start", "machine_id", "sensor"),
        kinds=frozenset({"prophet", "mlflow"}),
        description="Prophet forecasts of machine health signals, one series per machine "
        "and signal: how soon a degrading machine crosses its failure limit.",
    ),
    FamilySpec(
        model=ModelFamily(
            name="process_yield",
            primary_metric="r2",
            higher_is_better=True,
            # No constant floor: a real line's R² depends on its process (0.66 can be as
            # good as a table allows). The model must beat the mean / ridge and majority /
            # logistic baselines on the same rows; a plant adds floors in MFG_MODEL_GATES.
            floors={},
            flavor="sklearn",
            baseline_metrics=("r2", "balanced_accuracy"),
        ),
        module="mfg_assets.ml.yield_model",
        feature_table=_PROCESS_UNITS,
        drift=DriftInputs(_PROCESS_UNITS, "ts", None, "process", target="yield_pct",
                          ignore=("param__ambient_temp",)),
        kinds=frozenset({"sklearn", "mlflow"}),
        description="Process yield model (scikit-learn): predicts a unit's yield from its "
        "process parameters, for set-point tuning and early scrap warnings.",
    ),
    FamilySpec(
        model=ModelFamily(
            name="vision_defect",
            # Balanced accuracy, not accuracy: "always ok" scores 0.9 accuracy on a line
            # with 10 % defects. The model must beat the majority class and a logistic
            # regression on downscaled pixels on the same rows; a defect recall floor keeps
            # a model that misses half the defects off the line whatever its baselines.
            primary_metric="balanced_accuracy",
            higher_is_better=True,
            floors={"recall_defect": 0.5},
            flavor="pytorch",
            # recall of defects is a floor, not a baseline race: a class-weighted logistic
            # baseline can buy recall by flagging many images
            baseline_metrics=("balanced_accuracy",),
        ),
        module="mfg_assets.ml.vision",
        feature_table=_IMAGE_DATASET,
        drift=DriftInputs(_IMAGE_DATASET, "ts", "camera_id", "image"),
        kinds=frozenset({"pytorch", "mlflow"}),
        description="Visual defect classifier (small CNN) on inspection images: ok, "
        "scratch, dent, missing part.",
        edge_kind="camera",
        retrain_priority=EDGE_RETRAIN_PRIORITY,
    ),
    FamilySpec(
        model=ModelFamily(
            name="part_detection",
            primary_metric="map50",
            higher_is_better=True,
            floors={"map50": 0.5},
            flavor="pytorch",
        ),
        module="mfg_assets.ml.detection",
        feature_table=_ASSEMBLY_IMAGES,
        drift=DriftInputs(_ASSEMBLY_IMAGES, "ts", "camera_id", "image"),
        kinds=frozenset({"pytorch", "mlflow"}),
        description="Missing-part detector (small anchor-free CNN, trained from scratch) on "
        "assembly camera images: boxes per component, and the layout slots left empty.",
        edge_kind="assembly",
        retrain_priority=EDGE_RETRAIN_PRIORITY,
    ),
    FamilySpec(
        model=ModelFamily(
            name="edge_health",
            primary_metric="f1",
            higher_is_better=True,
            # No constant floors (they were what a multi-day simulated fleet allows): the
            # model must beat the majority class ("never fails", F1 0) and a logistic
            # regression on the standardized health columns, thresholded as it is, on the
            # same windows; a plant adds floors in MFG_MODEL_GATES.
            floors={},
            flavor="sklearn",
            quiet_metric="false_alarm_rate",
            baseline_metrics=("f1", "auroc"),
        ),
        module="mfg_assets.ml.edge_health",
        feature_table=_EDGE_TELEMETRY,
        drift=DriftInputs(_EDGE_TELEMETRY, "window_start", "edge_id", "sensor"),
        kinds=frozenset({"sklearn", "mlflow"}),
        description="Edge device health (scikit-learn): predicts that an edge device fails "
        "(memory leak to OOM, thermal shutdown, crash loop) within the next hours, from its "
        "telemetry trends and log-template counts.",
    ),
)

FAMILIES: dict[str, FamilySpec] = {entry.name: entry for entry in _ENTRIES}


def register(entry: FamilySpec) -> None:
    """Add a family at run time (tests, plugins); its module must follow ``ml/base.py``."""
    FAMILIES[entry.name] = entry


def spec(name: str) -> FamilySpec:
    """The registry entry of family ``name``."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}") from None


def family(name: str) -> ModuleType:
    """The module of family ``name`` (search_space, train, evaluate, save, load, ...).

    Raises when the module's own ``FAMILY`` / ``FEATURE_TABLE`` disagree with its entry (a
    module added without reading the registry, or an entry pointing at the wrong module).
    """
    entry = spec(name)
    module = importlib.import_module(entry.module)
    declared = (module.FAMILY.name, getattr(module, "FEATURE_TABLE", entry.feature_table))
    if declared != (entry.name, entry.feature_table):
        raise ValueError(f"{entry.module} declares (family, features) {declared}, its "
                         f"registry entry says {(entry.name, entry.feature_table)}")
    return module


def retrain_priority(name: str) -> int:
    """Queue priority of a drift retrain of family ``name`` (routine for an unknown one)."""
    entry = FAMILIES.get(name)
    return ROUTINE_RETRAIN_PRIORITY if entry is None else entry.retrain_priority


def served_by(edge_kind: str | None) -> str | None:
    """The family an edge of this kind serves, or None."""
    for entry in FAMILIES.values():
        if edge_kind is not None and entry.edge_kind == edge_kind:
            return entry.name
    return None


def edge_served() -> list[str]:
    """Families served on edges, in registry order."""
    return [entry.name for entry in FAMILIES.values() if entry.edge_kind]
