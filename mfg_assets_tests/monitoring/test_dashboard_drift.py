"""The dashboard's drift section: one line per model family from the latest evaluation."""

from datetime import UTC, datetime

import polars as pl

from mfg_assets.lake.registry import table
from mfg_assets.monitoring.dashboard import collect, render_html

T1 = datetime(2026, 11, 2, tzinfo=UTC)


def drift_rows(
    computed_at: datetime, family: str, psis: list[float], n_recent: int
) -> pl.DataFrame:
    spec = table("monitoring.drift")
    rows = [
        {
            "computed_at": computed_at, "family": family, "kind": "input",
            "feature": f"f{k}", "segment": "cam-01", "n_reference": 100, "n_recent": n_recent,
            "psi": psi, "ks_stat": 0.1, "ks_pvalue": 0.5, "wasserstein": 0.1,
            "mean_reference": 1.0, "mean_recent": 1.0, "drifted": psi > 0.2,
            "reference_start": T1, "reference_end": T1, "recent_start": T1, "recent_end": T1,
            "reference_source": "oldest window", "family_drifted": any(p > 0.2 for p in psis),
            "reason": "test", "evidence_id": f"{family}-{computed_at:%d}",
            "declared": psi > 0.2,
        }
        for k, psi in enumerate(psis)
    ]
    return pl.DataFrame(rows).select(list(spec.polars_schema))


def test_latest_evaluation_summarised_per_family(lake):
    spec = table("monitoring.drift")
    old = datetime(2026, 11, 20, tzinfo=UTC)
    new = datetime(2026, 11, 21, tzinfo=UTC)
    lake.append(spec, drift_rows(old, "vision_defect", [0.9, 0.8], 50))  # superseded
    lake.append(spec, pl.concat([
        drift_rows(new, "vision_defect", [0.05, 0.6, 0.3], 50),
        drift_rows(new, "process_yield", [0.01], 0),
    ], how="vertical_relaxed"))
    rows = {row["family"]: row for row in collect(lake)["drift"]}
    assert rows["vision_defect"]["drifted"] == 2 and rows["vision_defect"]["verdict"] is True
    assert rows["vision_defect"]["top_drifted"] == "f1 (cam-01), f2 (cam-01)"
    assert rows["vision_defect"]["max_psi"] == 0.6
    assert rows["process_yield"]["verdict"] is False
    assert rows["process_yield"]["top_drifted"] == "no data newer than the reference window"
    html = render_html(collect(lake))
    assert "f1 (cam-01), f2 (cam-01)" in html
