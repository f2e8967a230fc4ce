"""Rollout policy: worse canary rolled back, better promoted, too little data waits,
require_approval waits for an operator; state is a row in the Delta table edge.rollouts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from mfg_assets.edge.store import BundleStore
from mfg_assets.fleet import rollout
from mfg_assets.fleet.rollout import RolloutPolicy, advance, approve, compare, start_rollout
from mfg_assets.lake.registry import table
from mfg_assets_tests.edge.helpers import fleet_store

EDGES = ("edge-cam01", "edge-cam02", "edge-cam03", "edge-cam04")
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
LABELS = ("ok", "scratch", "dent", "missing_part")


@pytest.fixture
def store(tmp_path) -> BundleStore:
    return fleet_store(tmp_path / "store", "vision", EDGES)


def candidates() -> dict[str, str]:
    return {edge: f"vision-v2-{edge}" for edge in EDGES}


def records(
    edge: str, bundle: str, n: int, accuracy: float, latency_ms: float = 4.0,
    defect_share: float = 0.3,
) -> tuple[list[dict], list[dict]]:
    """n predictions of one edge and bundle, right on ``accuracy`` of them, with labels."""
    preds, labels = [], []
    for k in range(n):
        source = f"{edge}/{bundle}/{k}"
        label = LABELS[1 + k % 3] if (k % 10) < 10 * defect_share else "ok"
        right = (k * 7919 % n) < accuracy * n
        value = label if right else ("ok" if label != "ok" else "scratch")
        ts = NOW - timedelta(minutes=30) + timedelta(seconds=k)
        preds.append({"edge_id": edge, "bundle_id": bundle, "source_id": source,
                      "value": value, "score": 0.5, "latency_ms": latency_ms, "ts": ts})
        labels.append({"source_id": source, "label": label})
    return preds, labels


def fleet(n: int, canary_accuracy: float, control_accuracy: float = 0.95, **canary_options):
    """Canary edge-cam01 on v2, the rest on v1."""
    preds, labels = [], []
    for edge in EDGES:
        if edge == "edge-cam01":
            p, lab = records(edge, f"vision-v2-{edge}", n, canary_accuracy, **canary_options)
        else:
            p, lab = records(edge, f"vision-v1-{edge}", n, control_accuracy)
        preds += p
        labels += lab
    return pl.DataFrame(preds), pl.DataFrame(labels)


def _start(lake, store, **options):
    return start_rollout(lake, store, model="vision_defect", version=2,
                         candidate_bundles=candidates(), now=NOW - timedelta(hours=1), **options)


def test_start_assigns_the_canary_only_and_records_the_state(lake, store):
    started = _start(lake, store)
    assert started.canary_edges == ("edge-cam01",) and started.state == "canary"
    assert store.assignment("edge-cam01").bundle_id == "vision-v2-edge-cam01"
    assert store.assignment("edge-cam01").rollout_id == started.rollout_id
    assert store.assignment("edge-cam02").bundle_id == "vision-v1-edge-cam02"
    row = lake.read(table("edge.rollouts")).row(0, named=True)
    assert row["state"] == "canary" and row["rollout_id"] == started.rollout_id


def test_a_better_canary_is_promoted_to_the_fleet(lake, store):
    started = _start(lake, store)
    predictions, labels = fleet(200, canary_accuracy=0.97)
    done = advance(lake, store, started.rollout_id, predictions, labels, now=NOW)
    assert done.state == "promoted" and done.decision == "promote", done.reason
    assert all(store.assignment(e).bundle_id == f"vision-v2-{e}" for e in EDGES)
    assert done.metrics["canary"]["predictions"] == 200
    assert rollout.load(lake, started.rollout_id).state == "promoted"
    assert lake.read(table("edge.rollouts")).height == 1  # one row per rollout, rewritten


def test_a_worse_canary_is_rolled_back(lake, store):
    started = _start(lake, store)
    predictions, labels = fleet(200, canary_accuracy=0.85)
    done = advance(lake, store, started.rollout_id, predictions, labels, now=NOW)
    assert done.state == "rolled_back" and done.decision == "rollback"
    assert "accuracy" in done.reason
    assert store.assignment("edge-cam01").bundle_id == "vision-v1-edge-cam01"
    assert store.assignment("edge-cam01").reason == "rolled back"
    # terminal: later data does not revive it
    again = advance(lake, store, started.rollout_id, *fleet(200, 0.99), now=NOW)
    assert again.state == "rolled_back"


def test_not_enough_data_waits(lake, store):
    started = _start(lake, store)
    predictions, labels = fleet(20, canary_accuracy=0.99)
    done = advance(lake, store, started.rollout_id, predictions, labels, now=NOW)
    assert done.state == "canary" and done.decision == "wait"
    assert "not enough data" in done.reason
    assert store.assignment("edge-cam02").bundle_id == "vision-v1-edge-cam02"
    # enough predictions but too few of them labelled: still waiting
    predictions, labels = fleet(200, canary_accuracy=0.99)
    done = advance(lake, store, started.rollout_id, predictions, labels.head(40), now=NOW)
    assert done.decision == "wait" and "not enough labels" in done.reason


def test_require_approval_waits_for_an_operator(lake, store):
    started = _start(lake, store, require_approval=True)
    predictions, labels = fleet(200, canary_accuracy=0.97)
    waiting = advance(lake, store, started.rollout_id, predictions, labels, now=NOW)
    assert waiting.state == "awaiting_approval" and "approval" in waiting.reason
    assert store.assignment("edge-cam02").bundle_id == "vision-v1-edge-cam02"
    done = approve(lake, store, started.rollout_id, operator="shift-lead", now=NOW)
    assert done.state == "promoted" and done.approved_by == "shift-lead"
    assert store.assignment("edge-cam02").bundle_id == "vision-v2-edge-cam02"


def test_latency_is_judged_on_the_median_until_the_tail_has_predictions_in_it():
    canary = {"edge-cam01": "vision-v2-edge-cam01"}
    control = {e: f"vision-v1-{e}" for e in EDGES[1:]}
    policy = RolloutPolicy(min_predictions=20, min_labelled=10)

    def with_spikes(n: int, slow: int, latency_ms: float = 30.0) -> pl.DataFrame:
        """n predictions per edge, the canary's first ``slow`` of them at ``latency_ms``."""
        predictions, _ = fleet(n, canary_accuracy=0.97)
        slowed = (pl.col("edge_id") == "edge-cam01") & (
            pl.col("source_id").str.extract(r"/(\d+)$").cast(pl.Int64) < slow)
        return predictions.with_columns(
            pl.when(slowed).then(latency_ms).otherwise(pl.col("latency_ms")).alias("latency_ms"))

    # two scheduling hiccups among 27 predictions: the p95 is one of them, the median is not
    result = compare(with_spikes(27, 2), canary=canary, control=control, policy=policy)
    assert result.canary.latency_p95_ms > 20 and result.decision == "promote", result.reason
    assert "latency p50" in result.reason
    # a canary slow on most predictions is rolled back on the median all the same
    result = compare(with_spikes(27, 20), canary=canary, control=control, policy=policy)
    assert result.decision == "rollback" and "latency p50" in result.reason
    # with 100 predictions per group, the tail counts: 10 % slow fails the p95
    result = compare(with_spikes(100, 10), canary=canary, control=control, policy=policy)
    assert result.decision == "rollback" and "latency p95" in result.reason


def test_without_labels_rate_deviation_and_latency_roll_back():
    canary = {"edge-cam01": "vision-v2-edge-cam01"}
    control = {e: f"vision-v1-{e}" for e in EDGES[1:]}
    predictions, _ = fleet(200, canary_accuracy=0.95, defect_share=0.8)
    result = compare(predictions, canary=canary, control=control)
    assert result.decision == "rollback" and "positive rate" in result.reason
    predictions, _ = fleet(200, canary_accuracy=0.95, latency_ms=30.0)
    result = compare(predictions, canary=canary, control=control)
    assert result.decision == "rollback" and "latency p95" in result.reason
    predictions, _ = fleet(200, canary_accuracy=0.95)
    assert compare(predictions, canary=canary, control=control).decision == "promote"
    errors = pl.DataFrame({"edge_id": ["edge-cam01"], "ts": [NOW], "log_errors": [20]})
    result = compare(predictions, canary=canary, control=control, telemetry=errors)
    assert result.decision == "rollback" and "error rate" in result.reason


def test_canary_choice_and_refusals(lake, store):
    assert rollout.choose_canary(EDGES, 0.5) == ["edge-cam01", "edge-cam02"]
    with pytest.raises(ValueError, match="at least two edges"):
        rollout.choose_canary(EDGES[:1], 0.5)
    with pytest.raises(ValueError, match="nothing to compare"):
        _start(lake, store, canary_edges=list(EDGES))
    policy = RolloutPolicy(min_predictions=10)
    assert policy.max_accuracy_drop == 0.01
