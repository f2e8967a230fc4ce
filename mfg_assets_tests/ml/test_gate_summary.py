"""ml/gate.challenge_summary and gate_summary: what the catalog shows of a challenge, as plain
facts (the Dagster layer only wraps them as metadata)."""

from __future__ import annotations

from types import SimpleNamespace

from mfg_assets.ml.gate import (
    Challenge,
    Decision,
    GateEvidence,
    SegmentEvidence,
    challenge_summary,
    gate_summary,
)


def _outcome(evidence: GateEvidence, decision: Decision) -> Challenge:
    result = SimpleNamespace(
        parent_run_id="run-1", best_run_id="trial-2", model_name="mfg_sensor_anomaly",
        version="4", artifact_uri="/tmp/a", data_versions={"features.sensor_windows": 3},
        params={"lr": 0.1, "layers": (8, 4)}, trials=[SimpleNamespace(error=None),
                                                      SimpleNamespace(error="diverged")],
        holdout_metrics={"f1": 0.812345, "auroc": 0.9}, metrics={"f1": 0.7},
        info={"split": {"method": "blocks", "reason": "time blocks", "parts": {"train": 80},
                        "ignored": 1}},
        figures={})
    return Challenge(result, evidence, decision)


def test_challenge_summary_is_plain_json_ready_facts():
    outcome = _outcome(GateEvidence("whole hold-out", 120, {"f1": 0.8}, None, None),
                       Decision(True, "first model"))
    summary = challenge_summary(outcome, feature_rows=500)
    assert summary["best_params"] == {"lr": 0.1, "layers": [8, 4]}  # JSON-normalised
    assert (summary["trials"], summary["trials_failed"], summary["feature_rows"]) == (2, 1, 500)
    assert summary["holdout/f1"] == 0.8123 and summary["validation/f1"] == 0.7
    assert (summary["gate"], summary["gate_verdict"]) == ("first model", "passed")
    assert summary["split"] == "time blocks"
    assert summary["split_parts"] == {"method": "blocks", "parts": {"train": 80}}
    assert summary["model_artifacts"] == "/tmp/a"


def test_gate_summary_shows_floors_baselines_and_segments():
    segment = SegmentEvidence(("m1",), 40, 6, {"f1": 0.9}, {"f1": 0.5}, {"f1": 0.8},
                              {"f1": 0.81})
    evidence = GateEvidence(
        "hold-out of the last 6 h", 60, {"f1": 0.9}, "3", {"f1": 0.5},
        floors={"f1": 0.85, "baseline.zscore.f1": 0.4}, segment=segment)
    summary = gate_summary(_outcome(evidence, Decision(False, "", waiting=True)), 0.01)
    assert summary["verdict"] == "waiting" and summary["champion_version"] == "3"
    assert summary["challenger_floor_metrics"] == {"f1": 0.85, "baseline.zscore.f1": 0.4}
    assert summary["baselines"] == {"baseline.zscore.f1": 0.4}
    assert summary["drifted_segments"]["segments"] == ["m1"]
    assert summary["margin_relative"] == 0.01
    first = gate_summary(_outcome(GateEvidence("whole hold-out", 9, {"f1": 0.7}, None, None),
                                  Decision(True, "ok")), 0.01)
    assert first["champion_version"] == "none" and first["champion_holdout"] == {}
    assert first["challenger_floor_metrics"] == {"f1": 0.7} and first["drifted_segments"] == {}
