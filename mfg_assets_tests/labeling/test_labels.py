"""Verdicts in the lake, the review order, flag precision and labels on feature rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from mfg_assets.cli import main
from mfg_assets.gateway.routing import Router
from mfg_assets.labeling.metrics import PrecisionDrift, precision_drift
from mfg_assets.labeling.queue import review_queue
from mfg_assets.labeling.store import (
    VerdictRefused,
    append_verdict,
    current_labels,
    judged_predictions,
    read_labels,
    verdict_for,
)
from mfg_assets.labeling.training import with_labels
from mfg_assets.lake.registry import table
from mfg_assets.lake.silver import TYPERS, PlausibleWindow, refine
from mfg_assets.settings import get_settings
from mfg_assets.uns.contract import load_contract
from mfg_assets_tests.labeling import frames
from mfg_assets_tests.labeling.frames import PLACE, T0

CONTRACT = load_contract(get_settings().contract_path)
TOPIC = "acme/detroit/body/weld1/cell01/edge-01/feedback"


def _schema() -> dict:
    return CONTRACT.match(TOPIC)[0].messages[0].payload_schema


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.data())
def test_every_contract_valid_feedback_lands_in_silver_labels_with_its_lineage(doc):
    payload = doc.draw(from_schema(_schema()))
    router = Router(CONTRACT, source="test")
    assert router.route(TOPIC, orjson.dumps(payload), 1_767_225_600_000)
    bronze = router.take("batch-1").tables["bronze.feedback"]
    # the contract allows stamps up to 2100: silver's window is the lake's own choice
    window = PlausibleWindow(latest=datetime(2100, 1, 2, tzinfo=UTC))
    result = refine(table("silver.labels"), TYPERS["silver.labels"][1](bronze), "r",
                    window=window)
    row = result.valid.row(0, named=True)
    assert (row["edge_id"], row["source_id"], row["bundle_id"], row["model"]) == (
        "edge-01", payload["sourceId"], payload["bundleId"], payload["model"])
    assert (row["verdict"], row["operator_id"], row["comment"]) == (
        payload["verdict"], payload["operatorId"], payload.get("comment"))
    assert int(row["ts"].timestamp() * 1000) == payload["timestamp"]
    assert row["ingest_batch_id"] == "batch-1" and row["line"] == "weld1"


@pytest.mark.parametrize("change", [{"timestamp": 1_700_000_000}, {"verdict": ""},
                                    {"operatorId": ""}, {"extra": 1}])
def test_contract_refuses_bad_feedback(change):
    good = {"timestamp": 1_767_225_600_000, "sourceId": "img-1", "model": "vision_defect",
            "bundleId": "b1", "verdict": "confirm", "operatorId": "op7"}
    assert not CONTRACT.check(TOPIC, orjson.dumps(good)).errors
    assert CONTRACT.check(TOPIC, orjson.dumps({**good, **change})).errors


def test_queue_puts_flags_first_then_least_certain_and_leaves_out_judged():
    preds = frames.predictions([
        {"edge_id": "e1", "source_id": "far", "score": 0.1, "threshold": 0.5},
        {"edge_id": "e1", "source_id": "near", "score": 0.48, "threshold": 0.5},
        {"edge_id": "e1", "source_id": "flag-sure", "score": 0.99, "threshold": 0.5},
        {"edge_id": "e1", "source_id": "flag-close", "score": 0.52, "threshold": 0.5},
        {"edge_id": "e1", "source_id": "judged", "score": 0.9, "threshold": 0.5},
        {"edge_id": "e1", "source_id": "no-threshold", "score": 0.3, "threshold": None},
    ])
    done = frames.labels([{"edge_id": "e1", "source_id": "judged", "verdict": "confirm"}])
    order = review_queue(preds, done).get_column("source_id").to_list()
    assert order == ["flag-close", "flag-sure", "near", "far", "no-threshold"]


def test_latest_verdict_wins_and_truth_follows_the_flag():
    preds = frames.predictions([
        {"edge_id": "e1", "source_id": "a", "score": 0.9, "threshold": 0.5},
        {"edge_id": "e1", "source_id": "b", "score": 0.9, "threshold": 0.5},
        {"edge_id": "e1", "source_id": "c", "score": 0.1, "threshold": 0.5},
        {"edge_id": "e1", "source_id": "d", "score": 0.1, "threshold": 0.5},
        {"edge_id": "e1", "source_id": "e", "score": 0.1, "threshold": 0.5},
    ])
    verdicts = frames.labels([
        {"edge_id": "e1", "source_id": "a", "verdict": "reject", "ts": T0},
        {"edge_id": "e1", "source_id": "a", "verdict": "confirm", "ts": T0 + timedelta(1),
         "operator_id": "lead"},
        {"edge_id": "e1", "source_id": "b", "verdict": "reject"},
        {"edge_id": "e1", "source_id": "c", "verdict": "reject"},
        {"edge_id": "e1", "source_id": "d", "verdict": "ok"},
        {"edge_id": "e1", "source_id": "e", "verdict": "scratch"},
    ])
    assert current_labels(verdicts).height == 5
    truth = dict(judged_predictions(preds, verdicts).select("source_id", "truth").iter_rows())
    assert truth == {"a": True, "b": False, "c": True, "d": False, "e": True}


def test_flag_precision_per_edge_reference_vs_recent():
    rows, verdicts = [], []
    for i in range(40):  # e1: 20 flags per window, 18 then 10 confirmed; e2: few flags
        ts = T0 + timedelta(days=0 if i < 20 else 7, minutes=i)
        rows.append({"edge_id": "e1", "source_id": f"s{i}", "score": 0.9, "threshold": 0.5,
                     "ts": ts})
        good = i < 18 or 20 <= i < 30
        verdicts.append({"edge_id": "e1", "source_id": f"s{i}",
                         "verdict": "confirm" if good else "reject"})
    rows += [{"edge_id": "e2", "source_id": "x", "score": 0.9, "threshold": 0.5, "ts": T0}]
    verdicts += [{"edge_id": "e2", "source_id": "x", "verdict": "reject"}]
    rows += [{"edge_id": "e1", "source_id": "pass", "score": 0.1, "threshold": 0.5, "ts": T0}]
    verdicts += [{"edge_id": "e1", "source_id": "pass", "verdict": "reject"}]  # not a flag
    out = precision_drift(frames.predictions(rows), frames.labels(verdicts),
                          reference=(T0, T0 + timedelta(days=1)),
                          recent=(T0 + timedelta(days=6), T0 + timedelta(days=8)),
                          policy=PrecisionDrift(min_judged=20, max_drop=0.15))
    e1, e2 = out.row(0, named=True), out.row(1, named=True)
    assert (e1["flags_judged_reference"], e1["flags_confirmed_reference"]) == (20, 18)
    assert e1["precision_recent"] == pytest.approx(0.5) and e1["drifted"]
    assert e2["precision_reference"] == 0.0 and not e2["drifted"]  # too few to judge


def test_labels_override_feature_labels_where_present():
    start = T0.replace(minute=0)
    windows = pl.DataFrame({"machine_id": ["w1", "w1", "w2"],
                            "window_start": [start, start + timedelta(minutes=10), start],
                            "is_fault": [False, True, None], "f__mean": [1.0, 2.0, 3.0]})
    ms = int(start.timestamp() * 1000)
    preds = frames.predictions([
        {"edge_id": "e1", "source_id": f"w1/{ms}", "score": 0.1, "threshold": 0.5},
        {"edge_id": "e1", "source_id": f"w2/{ms}", "score": 0.9, "threshold": 0.5}])
    verdicts = frames.labels([{"edge_id": "e1", "source_id": f"w1/{ms}", "verdict": "reject"},
                              {"edge_id": "e1", "source_id": f"w2/{ms}", "verdict": "reject"}])
    out = with_labels(windows, preds, verdicts)
    assert out.get_column("is_fault").to_list() == [True, True, False]
    assert out.get_column("label_source").to_list() == ["operator", "dataset", "operator"]
    images = pl.DataFrame({"image_id": ["i1", "i2", "i3"], "label": ["ok", None, "ok"]})
    preds = frames.predictions([
        {"edge_id": "cam", "source_id": "i1", "score": 0.9, "threshold": 0.5,
         "value": "scratch", "model": "vision_defect"},
        {"edge_id": "cam", "source_id": "i2", "score": 0.9, "threshold": 0.5,
         "value": "dent", "model": "vision_defect"}])
    verdicts = frames.labels([
        {"edge_id": "cam", "source_id": "i1", "verdict": "confirm", "model": "vision_defect"},
        {"edge_id": "cam", "source_id": "i2", "verdict": "crack", "model": "vision_defect"}])
    out = with_labels(images, preds, verdicts)
    assert out.get_column("label").to_list() == ["scratch", "crack", "ok"]


def test_append_verdict_lands_in_bronze_and_reads_back(lake):
    pred = frames.predictions([{"edge_id": "edge-01", "source_id": "img-7", "score": 0.9,
                                "threshold": 0.5}]).row(0, named=True)
    verdict = verdict_for(pred, "reject", "op7", "glare", timestamp_ms=1_767_225_600_000)
    append_verdict(lake, CONTRACT, verdict)
    bronze = lake.read(table("bronze.feedback"))
    assert bronze.height == 1 and bronze["topic"][0] == TOPIC
    got = read_labels(lake).row(0, named=True)
    assert (got["source_id"], got["verdict"], got["operator_id"], got["comment"],
            got["bundle_id"]) == ("img-7", "reject", "op7", "glare", "bundle-1")
    with pytest.raises(VerdictRefused):
        append_verdict(lake, CONTRACT, verdict_for(pred, "reject", "  "))
    assert lake.read(table("bronze.feedback")).height == 1


def test_mfg_label_cli_records_a_verdict(lake, capsys):
    lake.append(table("silver.edge_predictions"), frames.predictions(
        [{"edge_id": "edge-01", "source_id": "weld-01/1767225600000", "score": 0.9,
          "threshold": 0.5}]))
    code = main(["label", "--edge", "edge-01", "--source-id", "weld-01/1767225600000",
                 "--verdict", "reject", "--operator", "op7"])
    assert code == 0, capsys.readouterr().err
    row = read_labels(lake).row(0, named=True)
    assert (row["line"], row["bundle_id"], row["verdict"]) == ("weld1", "bundle-1", "reject")
    assert main(["label", "--edge", "edge-01", "--source-id", "nope", "--verdict",
                 "reject", "--operator", "op7"]) == 2
    assert PLACE["site"] in capsys.readouterr().out


@pytest.mark.integration
def test_mfg_label_publishes_to_the_broker(broker, lake):
    import paho.mqtt.client as mqtt

    got = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda c, u, m: got.append((m.topic, orjson.loads(m.payload)))
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe("+/+/+/+/+/+/feedback", qos=1)
    sub.loop_start()
    try:
        import time
        time.sleep(0.3)
        code = main(["label", "--edge", "edge-01", "--source-id", "img-1", "--verdict",
                     "scratch", "--operator", "op7", "--model", "vision_defect", "--bundle",
                     "b1", "--place", "acme/detroit/body/weld1/cell01",
                     "--broker", f"mqtt://127.0.0.1:{broker.port}"])
        deadline = time.time() + 5
        while not got and time.time() < deadline:
            time.sleep(0.05)
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert code == 0 and got and got[0][0] == TOPIC
    assert got[0][1]["verdict"] == "scratch" and got[0][1]["bundleId"] == "b1"
    assert not CONTRACT.check(TOPIC, orjson.dumps(got[0][1])).errors


def test_family_drift_reports_the_operators_flag_precision_per_edge():
    """Operators reject most of an edge's recent flags: the family drifts on performance,
    named by that edge, while its inputs did not move."""
    from mfg_assets.ml.drift import family_drift

    rng = np.random.default_rng(0)
    start = datetime(2026, 11, 2, 5, tzinfo=UTC)
    windows = pl.DataFrame({
        "machine_id": "weld-01", "machine_type": "welder",
        "window_start": [start + timedelta(minutes=10 * i) for i in range(288)],
        "current__mean": rng.normal(200, 3, 288)}).with_columns(
        pl.col("window_start").dt.cast_time_unit("us"))
    rows, verdicts = [], []
    for i in range(180):
        ts = start + timedelta(minutes=10 * i)  # 30 h of flags; the last 6 h are "recent"
        recent = i >= 144
        rows.append({"edge_id": "e1", "source_id": f"s{i}", "score": 0.9, "threshold": 0.5,
                     "ts": ts, "value": "anomaly"})
        confirmed = (i % 10 != 0) if not recent else (i % 4 == 0)
        verdicts.append({"edge_id": "e1", "source_id": f"s{i}",
                         "verdict": "confirm" if confirmed else "reject"})
    report = family_drift("sensor_anomaly", windows, recent=timedelta(hours=6),
                          predictions=frames.predictions(rows), feedback=frames.labels(verdicts))
    row = report.features.filter(pl.col("feature") == "flag_precision").row(0, named=True)
    assert row["segment"] == "e1" and row["n_recent"] >= 30
    assert row["mean_reference"] > 0.85 and row["mean_recent"] < 0.35
    assert report.drifted and "e1:flag_precision" in report.reason
