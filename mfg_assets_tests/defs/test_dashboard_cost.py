"""Cost metadata, monitoring/cost and the dashboard on a small tmp_path lakehouse
(simulator -> replay -> bronze -> silver via Dagster), and the page in headless Chromium."""

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from mfg_assets.defs.bronze import BRONZE_TABLES, bronze_from_replay
from mfg_assets.defs.cost import cost_asset
from mfg_assets.defs.dashboard import dashboard_asset
from mfg_assets.defs.resources import default_resources
from mfg_assets.defs.silver import fault_labels, silver_assets
from mfg_assets.lake.catalog import connect
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import table
from mfg_assets.sim import SimConfig, write_replay
from mfg_assets_tests.brokers import free_port
from mfg_assets_tests.defs.test_dev_ui import CHROMIUM_FLAGS
from mfg_assets_tests.defs.test_materialize import bad_lines

DAY = "2026-11-01"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One lakehouse for the module: building it is the expensive part."""
    data_dir = tmp_path_factory.mktemp("dash") / "data"
    data_dir.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MFG_DATA_DIR", str(data_dir))
        for name in ("MFG_LAKE_URI", "MFG_REPLAY_DIR", "DAGSTER_HOME", "MFG_CONTRACT"):
            mp.delenv(name, raising=False)
        out = data_dir / "replay" / "run1"
        write_replay(SimConfig(seed=5, duration_h=1), out)
        with (out / "messages.jsonl").open("ab") as handle:  # some refusals: valid % < 100
            handle.writelines(line + b"\n" for line in bad_lines())
        instance = dg.DagsterInstance.ephemeral()
        resources = default_resources()
        bronze = dg.materialize([bronze_from_replay, fault_labels], instance=instance,
                                resources=resources)
        assert bronze.success
        silver = dg.materialize(silver_assets, partition_key=DAY, instance=instance,
                                resources=resources)
        assert silver.success
        report = data_dir / "reports" / "dashboard.html"
        monitoring = dg.materialize([cost_asset, dashboard_asset], instance=instance,
                                    resources=resources)
        assert monitoring.success
        yield {"data_dir": data_dir, "lake": Lake(str(data_dir / "lake"), {}),
               "bronze": bronze, "silver": silver, "monitoring": monitoring,
               "report": report}


def _metadata(result: dg.ExecuteInProcessResult, key: str) -> dict:
    events = [e for e in result.get_asset_materialization_events()
              if e.asset_key.to_user_string() == key]
    assert events, key
    return {k: getattr(v, "value", v) for k, v in events[-1].materialization.metadata.items()}


def test_silver_materializations_record_cpu_wall_and_delta_bytes(built):
    meta = _metadata(built["silver"], "silver/sensor_readings")
    assert meta["cost/cpu_s"] > 0 and meta["cost/wall_s"] > 0
    # first write of the table on a fresh lake: its files are exactly what the commit added
    folder = Path(built["lake"].uri(table("silver.sensor_readings")))
    on_disk = sum(p.stat().st_size for p in folder.rglob("*.parquet"))
    assert meta["delta_version_written"] == 0
    assert meta["cost/bytes_written"] == on_disk > 0


def test_bronze_load_shares_its_usage_and_counts_each_tables_bytes(built):
    metas = {name: _metadata(built["bronze"], "/".join(table(name).asset_key_path))
             for name in BRONZE_TABLES}
    for name, meta in metas.items():
        folder = Path(built["lake"].uri(table(name)))
        on_disk = sum(p.stat().st_size for p in folder.rglob("*.parquet"))
        assert meta["cost/bytes_written"] == on_disk, name  # fresh lake: all of it is new
    assert metas["bronze.sensor_readings"]["cost/bytes_written"] > 0
    assert sum(m["cost/cpu_s"] for m in metas.values()) > 0
    # CPU is shared in proportion to bytes: the biggest table carries the biggest share
    biggest = max(metas, key=lambda n: metas[n]["cost/bytes_written"])
    assert metas[biggest]["cost/cpu_s"] == max(m["cost/cpu_s"] for m in metas.values())


def test_cost_table_prices_the_recorded_materializations(built):
    meta = _metadata(built["monitoring"], "monitoring/cost")
    assert meta["materializations_priced"] >= len(silver_assets)
    con = connect(built["lake"])
    rows = dict(con.execute("SELECT item, monthly_usd FROM monitoring.cost").fetchall())
    assert set(rows) == {"pipeline_compute", "retraining", "storage_growth",
                         "cloud_inference_endpoints", "cloud_inference_egress", "edge_inference"}
    assert rows["pipeline_compute"] > 0 and rows["storage_growth"] > 0
    assert rows["retraining"] == 0  # no model trained in this lakehouse
    # storage growth is the recorded bytes (one day, bronze + silver) x 30 at $0.023/GB-month
    written = sum(_metadata(built["silver"], a.key.to_user_string())["cost/bytes_written"]
                  for a in silver_assets)
    written += sum(_metadata(built["bronze"], "/".join(table(n).asset_key_path))
                   ["cost/bytes_written"] for n in BRONZE_TABLES)
    assert rows["storage_growth"] == pytest.approx(written * 30 / 1e9 * 0.023)
    assert meta["usd_per_month/total_with_cloud_inference"] > 0


def _valid_pct(lake: Lake) -> str:
    con = connect(lake)
    pct = con.execute("SELECT 100.0 * sum(valid) / sum(received) "
                      "FROM bronze.validation_results").fetchone()[0]
    return f"{pct:.2f}%"


def test_dashboard_report_shows_the_lakehouse_figures(built):
    page = built["report"].read_text()
    assert _valid_pct(built["lake"]) != "100.00%"  # the refused lines count
    assert f"id='overall-valid-pct'>{_valid_pct(built['lake'])}</span>" in page
    con = connect(built["lake"])
    channel, received = con.execute(
        "SELECT channel, sum(received) FROM bronze.validation_results "
        "GROUP BY 1 ORDER BY 2 DESC LIMIT 1").fetchone()
    assert f'data-channel="{channel}"><td data-col="channel">{channel}</td>' \
           f'<td data-col="received">{received}</td>' in page
    assert "no drift report yet" in page  # monitoring.drift not built here
    assert 'data-item="cloud_inference_endpoints"' in page
    assert page.count("data:image/png;base64,") >= 2  # trend and channel charts
    assert "<script" not in page and "http://" not in page and "https://" not in page


@pytest.mark.integration
@pytest.mark.slow
def test_mfg_dashboard_renders_in_headless_chromium(built, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium): page render not checked")
    port = free_port()
    env = dict(os.environ, MFG_DATA_DIR=str(built["data_dir"]))
    env.pop("MFG_LAKE_URI", None)
    log = (tmp_path / "dashboard.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mfg_assets.cli", "dashboard", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=30).read()
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "dashboard.log").read_text()
                time.sleep(0.5)
        browser = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"]
        dom = subprocess.run([*browser, "--dump-dom", url], capture_output=True, text=True,
                             timeout=120).stdout
        assert _valid_pct(built["lake"]) in dom, dom[-2000:]
        assert "Contract compliance" in dom and "Rollouts" in dom
        shot = tmp_path / "dashboard.png"
        subprocess.run([*browser, "--hide-scrollbars", "--window-size=1280,2000",
                        f"--screenshot={shot}", url], capture_output=True, timeout=120)
        png = shot.read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # a blank page is ~5 KB
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)
        log.close()
