"""Inspection statistics as plain polars: per edge and per line, defect rate, accuracy
against QA labels, latency and rollout stage (no Dagster, no lakehouse)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import polars as pl
import pytest

from mfg_assets.monitoring.inspection import edge_stages, inspection_stats, stats_markdown

DAY = date(2026, 11, 1)
T = datetime(2026, 11, 1, 8, tzinfo=UTC)


def predictions() -> pl.DataFrame:
    rows = [  # (edge, source, value, latency)
        ("cam1", "i1", "ok", 2.0), ("cam1", "i2", "scratch", 4.0),
        ("cam1", "i3", "ok", 6.0), ("cam2", "i4", "dent", 10.0),
    ]
    return pl.DataFrame([{"date": DAY, "line": "final1", "edge_id": e, "model": "vision_defect",
                          "source_id": s, "value": v, "latency_ms": ms} for e, s, v, ms in rows])


def rollouts() -> pl.DataFrame:
    def rollout(state: str, canary: list[str], control: list[str], minute: int) -> dict:
        return {"model": "vision_defect", "state": state, "canary_edges": json.dumps(canary),
                "control_edges": json.dumps(control),
                "updated_at": T.replace(minute=minute)}

    # cam1 was a canary, then the same rollout was promoted: the latest stage counts
    return pl.DataFrame([rollout("canary", ["cam1"], ["cam2"], 0),
                         rollout("promoted", ["cam1"], ["cam2"], 5)])


def test_edge_stages_keep_the_latest_rollout_of_each_edge():
    stages = {r["edge_id"]: r["rollout_stage"] for r in edge_stages(rollouts()).to_dicts()}
    assert stages == {"cam1": "promoted (canary)", "cam2": "promoted (control)"}
    assert edge_stages(rollouts().clear()).is_empty()


def test_inspection_stats_per_edge_and_per_line():
    labels = pl.DataFrame({"source_id": ["i1", "i2", "i4"], "label": ["ok", "dent", "dent"]})
    stats = inspection_stats(predictions(), labels, rollouts(), computed_at=T)
    cam1 = stats.filter(pl.col("edge_id") == "cam1").row(0, named=True)
    assert (cam1["scope"], cam1["predictions"], cam1["defects"]) == ("edge", 3, 1)
    assert cam1["defect_rate"] == pytest.approx(1 / 3)
    # i1 right, i2 wrong (scratch vs dent); i3 is not labelled
    assert (cam1["labelled"], cam1["accuracy"]) == (2, 0.5)
    assert cam1["latency_p50_ms"] == pytest.approx(4.0)
    assert cam1["rollout_stage"] == "promoted (canary)"
    line = stats.filter(pl.col("scope") == "line").row(0, named=True)
    assert (line["edge_id"], line["predictions"], line["defects"]) == (None, 4, 2)
    assert line["accuracy"] == pytest.approx(2 / 3)
    assert line["rollout_stage"] == "promoted (canary), promoted (control)"
    text = stats_markdown(stats)
    assert "| edge | final1 | cam1 | vision_defect | 3 | 33.3% | 50.0% |" in text
    assert stats_markdown(stats.clear()) == "no edge predictions yet"
