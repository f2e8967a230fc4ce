"""Every section of the dashboard has content on a small demo lakehouse (parsed HTML), the line
health view says what runs where, and compliance is charted on event time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import dagster as dg
import polars as pl
import pytest

from mfg_assets import plan
from mfg_assets.demo import write_misbehaving
from mfg_assets.fleet import rollout as ro
from mfg_assets.lake.registry import table
from mfg_assets.monitoring.dashboard import collect, render_html
from mfg_assets.sim import SimConfig, write_replay

START = datetime(2026, 11, 2, tzinfo=UTC)
KIND = "input"
SECTIONS = ("lines", "compliance", "inspection", "drift", "rollouts", "cost")


def row(name: str, **values: Any) -> pl.DataFrame:
    """One row of a registered table: given values, a plain default for the rest."""
    defaults = {pl.String: "x", pl.Boolean: False, pl.Int64: 1, pl.Float64: 0.5,
                pl.Date: START.date()}
    schema = table(name).polars_schema
    out = {}
    for col, dtype in schema.items():
        if col in values:
            out[col] = values[col]
        elif isinstance(dtype, pl.Datetime):
            out[col] = START
        else:
            out[col] = defaults.get(type(dtype), defaults.get(dtype))
    return pl.DataFrame([out], schema=schema)


class Sections(HTMLParser):
    """Text, tables, images and 'empty' notes per <section id=...>."""

    def __init__(self) -> None:
        super().__init__()
        self.current: str | None = None
        self.found: dict[str, dict[str, Any]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self.current = a.get("id")
            self.found[self.current] = {"rows": 0, "images": 0, "empty": 0, "text": ""}
        elif self.current is not None:
            s = self.found[self.current]
            s["rows"] += tag == "tr"
            s["images"] += tag == "img"
            s["empty"] += "empty" in (a.get("class") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self.current = None

    def handle_data(self, data: str) -> None:
        if self.current is not None:
            self.found[self.current]["text"] += data


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory):
    """Bronze and silver through the plan's named jobs on a 2 h plant with the misbehaving
    device, and one row of each table the later demo steps write."""
    data_dir = tmp_path_factory.mktemp("demo") / "data"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MFG_DATA_DIR", str(data_dir))
        for name in ("MFG_LAKE_URI", "MFG_REPLAY_DIR", "DAGSTER_HOME", "MFG_CONTRACT"):
            mp.delenv(name, raising=False)
        from mfg_assets.lake.delta import Lake

        config = SimConfig(seed=6, start=START, duration_h=2,
                           sources=("welding", "telemetry"))
        write_replay(config, data_dir / "replay" / "plant")
        write_misbehaving(config, data_dir / "replay" / "bad")
        runner = plan.Runner(dg.DagsterInstance.ephemeral(), plan.resources())
        assert all(r.success for r in runner.run(plan.BRONZE))
        assert all(r.success for r in runner.run(plan.SILVER, [START.date().isoformat()]))
        lake = Lake(str(data_dir / "lake"), {})
        lake.append(table("edge.bundles"), row(
            "edge.bundles", bundle_id="b-weld-2", edge_id="edge-weld1", model="sensor_anomaly",
            model_version="2", precision="int8"))
        # the edge reports running that bundle
        telemetry = lake.read(table("silver.edge_telemetry"))
        lake.append(table("silver.edge_telemetry"), telemetry.filter(
            pl.col("edge_id") == "edge-weld1").tail(1).with_columns(
            pl.lit("b-weld-2").alias("bundle_id"), pl.col("ts") + timedelta(minutes=1)))
        ro.save(lake, ro.Rollout(
            rollout_id="ro-1", model="sensor_anomaly", candidate_version="2", state="promoted",
            canary_edges=("edge-weld1",), control_edges=("edge-press1",),
            candidate_bundles={}, baseline_bundles={}, require_approval=False,
            started_at=START, updated_at=START, decision="promote",
            reason="canary within tolerances"))
        lake.append(table("monitoring.inspection_stats"), row(
            "monitoring.inspection_stats", date=date(2026, 11, 2), scope="edge",
            edge_id="edge-weld1"))
        lake.append(table("monitoring.drift"), pl.concat([
            row("monitoring.drift", family="sensor_anomaly", segment="weld-02", drifted=True,
                kind=KIND, family_drifted=True, n_recent=40, psi=0.6),
            row("monitoring.drift", family="sensor_anomaly", segment="weld-01", drifted=False,
                kind=KIND, family_drifted=True, n_recent=40, psi=0.01)]))
        lake.append(table("monitoring.cost"), row("monitoring.cost", item="edge inference",
                                                  category="edge_inference", monthly_usd=0.0))
        yield lake


@pytest.mark.integration
def test_every_section_has_content(demo_lake):
    parser = Sections()
    parser.feed(render_html(collect(demo_lake)))
    assert set(SECTIONS) <= set(parser.found)
    for name in SECTIONS:
        s = parser.found[name]
        assert s["empty"] == 0, (name, s["text"][:300])
        assert s["rows"] >= 2, name  # a header and at least one row
    assert parser.found["compliance"]["images"] >= 2  # the event-time trend, per channel


@pytest.mark.integration
def test_line_health_says_what_runs_where(demo_lake):
    lines = {r["line_id"]: r for r in collect(demo_lake)["lines"]}
    weld = lines["body/weld1"]
    assert weld["refused"] == 8 and weld["valid_pct"] < 100  # the misbehaving welder
    assert "edge-weld1: sensor_anomaly v2" in weld["edges"]
    assert weld["drift"] == "sensor_anomaly: DRIFTED (weld-02)"
    assert weld["last_rollout"].startswith("sensor_anomaly v2 promoted")
    assert weld["freshness"] == "current"


@pytest.mark.integration
def test_compliance_is_charted_on_event_time(demo_lake):
    c = collect(demo_lake)["compliance"]
    assert c["trend_bucket"] == "hour"
    hours = [r["t"] for r in c["trend"]]
    # two simulated hours, whatever minute the replay was ingested in
    assert hours[0] == START and hours[-1] == START + timedelta(hours=1), hours
    # refusals with a readable epoch timestamp are placed on the chart, the rest counted apart
    assert sum(r["received"] - r["valid"] for r in c["trend"]) + c["undated_refusals"] == 8
    # the truncated JSON (twice) and the text timestamp have no event time
    assert c["undated_refusals"] == 3
