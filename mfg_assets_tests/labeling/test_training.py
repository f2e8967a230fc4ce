"""The operator's word in the next training set: verdicts relabel the challenger's rows.

Real Delta tables on a tmp_path lakehouse: ``features.sensor_windows`` whose fault span
labels more windows than looked faulty, an edge's flags on them in
``silver.edge_predictions``, and operators' verdicts in ``silver.labels``. The challenger of
a toy window family (``window_family``, which keeps the frames it trained on) must train on
the operators' labels, say how many there were, and record the label tables' versions.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import polars as pl
import pytest

from mfg_assets.defs.models import TrainConfig, challenger_asset, model_key, model_resources
from mfg_assets.defs.resources import default_resources
from mfg_assets.labeling.training import training_frame
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.names import (
    FEATURES_SENSOR_WINDOWS,
    SILVER_EDGE_PREDICTIONS,
    SILVER_LABELS,
)
from mfg_assets.lake.registry import table
from mfg_assets.ml.families import FAMILIES, spec
from mfg_assets_tests.labeling import frames, window_family

REJECTED = (10, 11, 12)  # flagged windows inside the fault span the operators call normal
CONFIRMED = (15,)  # a flag inside the span they confirm: an operator label, not a change
QUIET_REJECTED = (30,)  # a flag outside the span they reject: the dataset said so already


def _ms(i: int) -> int:
    start = window_family.windows(1).get_column("window_start")[0] + timedelta(minutes=10 * i)
    return int(start.timestamp() * 1000)


def _flag(i: int) -> dict:
    return {"edge_id": "edge-01", "source_id": f"w1/{_ms(i)}", "score": 0.9, "threshold": 0.5}


def _record_verdicts(lake: Lake, verdicts: dict[int, str]) -> None:
    """The edge's flags on these windows and the operators' verdicts on them."""
    lake.append(table(SILVER_EDGE_PREDICTIONS),
                frames.predictions([_flag(i) for i in sorted(verdicts)]))
    lake.append(table(SILVER_LABELS), frames.labels(
        [{"edge_id": "edge-01", "source_id": f"w1/{_ms(i)}", "verdict": v}
         for i, v in sorted(verdicts.items())]))


def _verdicts() -> dict[int, str]:
    return {**dict.fromkeys(REJECTED, "reject"), **dict.fromkeys(CONFIRMED, "confirm"),
            **dict.fromkeys(QUIET_REJECTED, "reject")}


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(FAMILIES, window_family.SPEC.name, window_family.SPEC)
    monkeypatch.setattr(window_family, "SEEN", [])
    return window_family.SPEC


def test_training_frame_relabels_judged_windows_and_counts_the_flips(lake):
    features = window_family.windows()
    _record_verdicts(lake, _verdicts())
    out, summary = training_frame(lake, window_family.SPEC, features)
    faults = out.get_column("is_fault").to_list()
    expected = [i in range(10, 20) and i not in REJECTED for i in range(features.height)]
    assert faults == expected
    assert (summary.operator_rows, summary.changed) == (5, len(REJECTED))
    assert summary.versions == {SILVER_LABELS: 0, SILVER_EDGE_PREDICTIONS: 0}
    # the model code picks its inputs by name: nothing new reaches it
    assert out.columns == features.columns
    assert out.drop("is_fault").equals(features.drop("is_fault"))
    # a later verdict is a new input, and the latest verdict on a window wins
    lake.append(table(SILVER_LABELS), frames.labels([
        {"edge_id": "edge-01", "source_id": f"w1/{_ms(10)}", "verdict": "confirm",
         "ts": frames.T0 + timedelta(hours=3)}]))
    out, summary = training_frame(lake, window_family.SPEC, features)
    assert out.get_column("is_fault")[10] is True
    assert (summary.changed, summary.versions[SILVER_LABELS]) == (len(REJECTED) - 1, 1)


def test_training_frame_without_verdicts_or_for_other_families_is_the_feature_table(lake):
    features = window_family.windows()
    out, summary = training_frame(lake, window_family.SPEC, features)  # no tables at all
    assert out.equals(features)
    assert (summary.applies, summary.operator_rows, summary.changed) == (True, 0, 0)
    assert summary.versions == {SILVER_LABELS: None, SILVER_EDGE_PREDICTIONS: None}
    lake.ensure(table(SILVER_LABELS))  # the table exists but nobody judged anything yet
    out, summary = training_frame(lake, window_family.SPEC, features)
    assert out.equals(features) and summary.versions[SILVER_LABELS] == 0
    _record_verdicts(lake, _verdicts())  # verdicts on windows do not touch process units
    units = pl.DataFrame({"unit_id": ["u1"], "yield_pct": [97.0]})
    out, summary = training_frame(lake, spec("process_yield"), units)
    assert out.equals(units) and not summary.applies and summary.metadata() == {}


def test_verdicts_on_images_relabel_the_vision_training_set(lake):
    images = pl.DataFrame({"image_id": ["i1", "i2", "i3"], "label": ["scratch", "ok", "dent"],
                           "split": ["train"] * 3})
    shots = [{"edge_id": "cam-01", "source_id": "i1", "score": 0.9, "threshold": 0.5,
              "value": "scratch", "model": "vision_defect"},
             {"edge_id": "cam-01", "source_id": "i3", "score": 0.9, "threshold": 0.5,
              "value": "dent", "model": "vision_defect"}]
    lake.append(table(SILVER_EDGE_PREDICTIONS), frames.predictions(shots))
    lake.append(table(SILVER_LABELS), frames.labels([
        {"edge_id": "cam-01", "source_id": "i1", "verdict": "reject", "model": "vision_defect"},
        {"edge_id": "cam-01", "source_id": "i3", "verdict": "confirm",
         "model": "vision_defect"}]))
    out, summary = training_frame(lake, spec("vision_defect"), images)
    assert out.get_column("label").to_list() == ["ok", "ok", "dent"]
    assert summary.metadata() == {"operator_labels": 2, "labels_changed_by_operators": 1}


def _challenge(instance: dg.DagsterInstance) -> dg.AssetMaterialization:
    asset = challenger_asset(window_family.SPEC)
    key = model_key(window_family.SPEC.name)
    result = dg.materialize(
        [asset], instance=instance, resources={**default_resources(), **model_resources()},
        run_config=dg.RunConfig(ops={key.to_python_identifier(): TrainConfig(budget=1)}))
    assert result.success
    (materialization,) = result.asset_materializations_for_node(asset.op.name)
    return materialization


def test_the_challenger_trains_on_operators_labels_and_says_how_many(
        toy, lake, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MFG_MLFLOW_ARTIFACTS", raising=False)
    features = window_family.windows()
    lake.append(table(FEATURES_SENSOR_WINDOWS), features)
    instance = dg.DagsterInstance.ephemeral()

    # no label tables yet: training proceeds on the feature table's own labels
    meta = _challenge(instance).metadata
    (seen,) = window_family.SEEN
    assert seen.get_column("is_fault").equals(features.get_column("is_fault"))
    assert (meta["operator_labels"].value, meta["labels_changed_by_operators"].value) == (0, 0)
    assert meta["data_versions"].value[SILVER_LABELS] is None

    # operators rejected K flags inside the fault span: the next challenger learns from it
    _record_verdicts(lake, _verdicts())
    meta = _challenge(instance).metadata
    seen = window_family.SEEN[-1]
    assert [seen.get_column("is_fault")[i] for i in REJECTED] == [False] * len(REJECTED)
    assert seen.get_column("is_fault").sum() == features.get_column("is_fault").sum() - len(
        REJECTED)
    assert meta["labels_changed_by_operators"].value == len(REJECTED)
    assert meta["operator_labels"].value == len(_verdicts())
    lineage = meta["data_versions"].value
    assert (lineage[SILVER_LABELS], lineage[SILVER_EDGE_PREDICTIONS],
            lineage[FEATURES_SENSOR_WINDOWS]) == (0, 0, 0)
