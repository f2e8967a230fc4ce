"""A drift retrain is judged on the segment that drifted, and waits for evidence."""

from __future__ import annotations

from mfg_assets.ml.base import ModelFamily
from mfg_assets.ml.gate import GateEvidence, SegmentEvidence, gate_decision, segment_decision

F1 = ModelFamily("anomaly_like", "f1", True, {"f1": 0.5}, "pytorch")
WHOLE = {"f1": 0.7}


def evidence(rows=200, positives=20, new=0.8, old=0.5, new_rest=0.7, old_rest=0.72):
    return SegmentEvidence(("welder-2",), rows, positives, {"f1": new}, {"f1": old},
                           {"f1": new_rest}, {"f1": old_rest})


def test_wins_on_the_drifted_segment_and_holds_elsewhere():
    decision = segment_decision(F1, evidence(), 0.01, 0.1, WHOLE)
    assert decision.passed and not decision.waiting
    assert "0.8 vs champion 0.5 on drifted welder-2" in decision.reason


def test_worse_elsewhere_is_refused():
    decision = segment_decision(F1, evidence(new_rest=0.5, old_rest=0.72), 0.01, 0.1, WHOLE)
    assert not decision.passed and not decision.waiting and "elsewhere" in decision.reason


def test_no_better_on_the_segment_is_refused():
    decision = segment_decision(F1, evidence(new=0.5, old=0.5), 0.01, 0.1, WHOLE)
    assert not decision.passed and not decision.waiting


def test_too_little_evidence_waits_instead_of_deciding_on_noise():
    few_rows = segment_decision(F1, evidence(rows=12), 0.01, 0.1, WHOLE, min_rows=30)
    assert few_rows.waiting and not few_rows.passed and few_rows.verdict == "waiting"
    assert "waiting for evidence on drifted welder-2: 12 scored rows (needs 30)" in \
        few_rows.reason
    few_faults = segment_decision(F1, evidence(positives=2), 0.01, 0.1, WHOLE, min_positives=5)
    assert few_faults.waiting and "2 positives (needs 5)" in few_faults.reason
    # a big win on a handful of rows is still only a wait, not a promotion
    lucky = segment_decision(F1, evidence(rows=5, new=1.0, old=0.0), 0.01, 0.1, WHOLE)
    assert lucky.waiting and not lucky.passed


def test_floors_and_baselines_still_bind_on_the_whole_hold_out():
    decision = segment_decision(F1, evidence(), 0.01, 0.1, {"f1": 0.4})
    assert not decision.passed and "misses its floor" in decision.reason


def test_gate_decision_routes_segment_evidence_and_keeps_waiting():
    ev = GateEvidence("last 12 h of drifted machine_id welder-2", 12, {"f1": 0.8}, "1",
                      {"f1": 0.5}, floors=WHOLE, segment=evidence(rows=12))
    decision = gate_decision(F1, ev, 0.01, 0.1, min_rows=30)
    assert decision.waiting and decision.reason.startswith("last 12 h of drifted")


def test_the_drift_retrain_request_carries_the_drifted_segments():
    from datetime import UTC, datetime

    import polars as pl

    from mfg_assets.defs.drift import retrain_requests
    from mfg_assets.defs.models import TrainConfig, model_key

    drifted = pl.DataFrame({
        "family": ["sensor_anomaly", "process_yield"], "evidence_id": ["e1", "e2"],
        "reason": ["welder-2 drifted", "yield drifted"],
        "computed_at": [datetime(2026, 11, 2, tzinfo=UTC)] * 2,
        "segments": [["welder-2"], []]})
    requests, _ = retrain_requests(drifted, {})
    configs = {r.tags["mfg/families"]: r.run_config["ops"][
        model_key(r.tags["mfg/families"]).to_python_identifier()]["config"] for r in requests}
    assert configs["sensor_anomaly"]["gate_segments"] == ["welder-2"]
    assert "gate_segments" not in configs["process_yield"]  # unsegmented: recent window
    settings = TrainConfig(**configs["sensor_anomaly"]).settings("run", "machine_id")
    assert settings.segments == ("welder-2",) and settings.segment_column == "machine_id"


def test_a_drifted_segment_without_faults_is_judged_on_the_quiet_metric():
    """A replaced sensor brings no faults, only false alarms: with a quiet metric the gate
    compares how often each model alarms there instead of waiting for faults forever (the
    closed loop waited with 0 positives on weld-02, or refused on F1 0 vs 0)."""
    quiet = ModelFamily("q", "f1", True, {"f1": 0.3}, "pytorch",
                        quiet_metric="false_alarm_rate")
    def case(positives, new_far, old_far):
        return SegmentEvidence(
            ("weld-02",), 73, positives,
            {"f1": 0.0, "false_alarm_rate": new_far}, {"f1": 0.0, "false_alarm_rate": old_far},
            {"f1": 0.7}, {"f1": 0.72})
    fixed = segment_decision(quiet, case(0, 0.05, 0.9), 0.01, 0.1, WHOLE)
    assert fixed.passed and "false_alarm_rate" in fixed.reason
    assert not segment_decision(quiet, case(0, 0.9, 0.9), 0.01, 0.1, WHOLE).passed
    assert segment_decision(quiet, case(None, 0.05, 0.9), 0.01, 0.1, WHOLE).passed
    # without a quiet metric the family still waits for faults
    assert segment_decision(F1, case(0, 0.05, 0.9), 0.01, 0.1, WHOLE).waiting
