"""Bring-your-own-data importers: rows land in silver (and bronze); bad input writes nothing."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from mfg_assets.cli import main
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.importers import (
    ImportRefused,
    import_images,
    import_process_runs,
    import_sensor_readings,
)
from mfg_assets.lake.registry import table
from mfg_assets.lake.silver import TYPERS, refine

RUNS = """unit_id,ts,machine_id,yield,temp,pressure
u1,2026-11-01T08:00:00Z,weld-01,95.5,200.1,3.2
u2,2026-11-01T09:00:00+01:00,weld-01,80,201.1,3.3
u3,2026-11-02T09:00:00Z,weld-02,99,,3.1
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def versions(lake: Lake) -> dict[str, int | None]:
    return {spec.qualified_name: lake.version(spec) for spec in
            (table("bronze.process_runs"), table("bronze.sensor_readings"),
             table("bronze.inspection_images"), table("bronze.ingest_batches"),
             table("silver.process_runs"), table("silver.process_parameters"),
             table("silver.sensor_readings"), table("silver.inspection_images"))}


def test_process_runs_land_in_silver_per_day_and_survive_a_rebuild_from_bronze(lake, tmp_path):
    report = import_process_runs(lake, write(tmp_path / "runs.csv", RUNS), label="yield")
    runs = lake.read(table("silver.process_runs")).sort("unit_id")
    assert runs.get_column("unit_id").to_list() == ["u1", "u2", "u3"]
    assert runs.get_column("passed").to_list() == [True, False, True]  # threshold 90
    assert [str(d) for d in runs.get_column("date")] == ["2026-11-01", "2026-11-01", "2026-11-02"]
    assert runs.filter(pl.col("unit_id") == "u2")["ts"].dt.hour().item() == 8  # +01:00 -> UTC
    params = lake.read(table("silver.process_parameters"))
    assert params.height == 5  # u3 has no temp: no row rather than a null
    assert report.days == ["2026-11-01", "2026-11-02"]
    assert set(runs.get_column("ingest_batch_id")) == {report.batch_id}
    batches = lake.read(table("bronze.ingest_batches"))
    assert batches.filter(pl.col("ingest_batch_id") == report.batch_id)["messages"].item() == 3

    # silver rebuilt from bronze (what a backfill of the day does) keeps the imported rows
    name = "silver.process_runs"
    bronze = lake.read_partition(table(TYPERS[name][0]), "2026-11-01")
    rebuilt = refine(table(name), TYPERS[name][1](bronze), run_id="backfill")
    assert rebuilt.rejected.height == 0
    assert sorted(rebuilt.valid.get_column("unit_id")) == ["u1", "u2"]

    # importing the same file again writes no duplicate rows to silver
    again = import_process_runs(lake, tmp_path / "runs.csv", label="yield")
    assert again.skipped_existing == 3 + 5
    assert lake.read(table("silver.process_runs")).height == 3


def test_pass_fail_labels_and_parquet(lake, tmp_path):
    frame = pl.DataFrame({
        "unit_id": ["a", "b"],
        "ts": pl.Series(["2026-11-03 10:00:00", "2026-11-03 11:00:00"]).str.to_datetime(),
        "result": ["OK", "NOK"],
        "speed": [1.0, 2.0],
    })
    frame.write_parquet(tmp_path / "runs.parquet")
    import_process_runs(lake, tmp_path / "runs.parquet", label="result")
    runs = lake.read(table("silver.process_runs")).sort("unit_id")
    assert runs.get_column("passed").to_list() == [True, False]
    assert runs.get_column("yield_pct").to_list() == [100.0, 0.0]
    assert runs.get_column("machine_id").to_list() == ["import", "import"]


def test_a_process_export_without_unit_id_or_ts_is_numbered_and_stamped_with_a_note(
        lake, tmp_path):
    from mfg_assets.ml.base import time_axis

    rows = "".join(f"{80 + i % 20},{200 + i},{i % 3}\n" for i in range(40))
    report = import_process_runs(lake, write(tmp_path / "export.csv",
                                             "yield,temp,pressure\n" + rows), label="yield")
    runs = lake.read(table("silver.process_runs"))
    assert runs.height == 40
    assert sorted(runs.get_column("unit_id")) == sorted(f"row-{i}" for i in range(1, 41))
    assert runs.get_column("ts").n_unique() == 1  # the import time, one instant
    assert any("no unit_id column" in n for n in report.notes), report.notes
    assert any("no ts column" in n for n in report.notes), report.notes
    # no invented order: the split logic sees no time axis and stratifies instead
    assert time_axis(runs, "ts")[0] is False


def test_sensor_readings_long_and_wide(lake, tmp_path):
    long = write(tmp_path / "long.csv", "machine_id,sensor,ts,value,unit\n"
                 "press-01,force,2026-11-01T08:00:00Z,10.5,kN\n"
                 "press-01,temp,2026-11-01T08:00:00Z,40,C\n")
    wide = write(tmp_path / "wide.csv", "machine_id,ts,current,voltage,line\n"
                 "weld-01,2026-11-01T08:00:00Z,195.1,24.0,weld1\n"
                 "weld-01,2026-11-01T08:00:10Z,195.3,,weld1\n")
    import_sensor_readings(lake, long)
    import_sensor_readings(lake, wide)
    rows = lake.read(table("silver.sensor_readings")).sort("machine_id", "sensor", "ts")
    assert rows.select("machine_id", "sensor", "value").rows() == [
        ("press-01", "force", 10.5), ("press-01", "temp", 40.0),
        ("weld-01", "current", 195.1), ("weld-01", "current", 195.3),
        ("weld-01", "voltage", 24.0),
    ]
    assert rows.filter(pl.col("sensor") == "force")["unit"].item() == "kN"
    assert set(rows.filter(pl.col("machine_id") == "weld-01")["line"]) == {"weld1"}


def test_images_any_size_become_grayscale_png(lake, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(folder / "a.jpg")
    Image.fromarray(rng.integers(0, 255, (200, 120), dtype=np.uint8)).save(folder / "b.png")
    Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(folder / "extra.png")
    labels = write(tmp_path / "labels.csv", "file,label,ts,camera,edge\n"
                   "a.jpg,scratch,2026-11-01T08:00:00Z,cam-9,edge-cam09\n"
                   "b.png,,2026-11-02T08:00:00Z,cam-9,edge-cam09\n")
    report = import_images(lake, folder, labels)
    images = lake.read(table("silver.inspection_images")).sort("ts")
    assert images.select("width", "height").rows() == [(30, 40), (120, 200)]
    assert images.get_column("label").to_list() == ["scratch", None]
    assert images.get_column("cell").to_list() == ["edge-cam09", "edge-cam09"]
    for png in images.get_column("png"):
        assert Image.open(io.BytesIO(png)).mode == "L"
    assert report.days == ["2026-11-01", "2026-11-02"]
    assert "1 image files" in str(report)  # extra.png is not in the labels file


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("unit_id,ts,temp\nu1,2026-11-01T08:00:00Z,1\n", "missing columns ['yield']"),
        ("unit_id,ts,yield,temp\nu1,2026-11-01T08:00:00Z,95,hot\n", "'temp'"),
        ("unit_id,ts,yield\nu1,yesterday,95\n", "'ts'"),
        ("unit_id,ts,yield\nu1,2026-11-01T08:00:00Z,140\n", "0..100"),
        ("unit_id,ts,yield\nu1,2026-11-01T08:00:00Z,\n", "label column 'yield' is empty"),
    ],
)
def test_malformed_tables_are_refused_and_nothing_is_written(lake, tmp_path, text, message):
    before = versions(lake)
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(ImportRefused, match=re.escape(message)) as refused:
        import_process_runs(lake, path, label="yield")
    assert str(path) in str(refused.value)
    assert versions(lake) == before


def test_malformed_sensor_tables_are_refused(lake, tmp_path):
    before = versions(lake)
    with pytest.raises(ImportRefused, match="'value'"):
        import_sensor_readings(lake, write(tmp_path / "s.csv", "machine_id,sensor,ts,value\n"
                                           "m,t,2026-11-01T08:00:00Z,abc\n"))
    with pytest.raises(ImportRefused, match="'current'"):
        import_sensor_readings(lake, write(tmp_path / "w.csv", "machine_id,ts,current\n"
                                           "m,2026-11-01T08:00:00Z,1.0\nm,2026-11-01T08:00:10Z,x\n"))
    with pytest.raises(ImportRefused, match="expected a .csv or .parquet"):
        import_sensor_readings(lake, write(tmp_path / "s.txt", "hello"))
    assert versions(lake) == before


def test_unreadable_or_missing_image_refuses_the_whole_import(lake, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("L", (16, 16)).save(folder / "good.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "tiny.png").write_bytes(b"")
    labels = write(tmp_path / "labels.csv",
                   "file,label\ngood.png,ok\nbroken.png,dent\ngone.png,ok\n")
    before = versions(lake)
    with pytest.raises(ImportRefused) as refused:
        import_images(lake, folder, labels)
    text = str(refused.value)
    assert "broken.png: unreadable image" in text and "gone.png: no such file" in text
    assert "2 images cannot be imported" in text and "good.png" not in text
    with pytest.raises(ImportRefused, match=r"missing columns \['label'\]"):
        import_images(lake, folder, write(tmp_path / "nolabel.csv", "file\ngood.png\n"))
    # too small for the silver schema (width >= 8): refused by the schema, named
    Image.new("L", (4, 4)).save(folder / "small.png")
    with pytest.raises(ImportRefused, match="silver.inspection_images schema"):
        import_images(lake, folder, write(tmp_path / "small.csv", "file,label\nsmall.png,ok\n"))
    assert versions(lake) == before


def test_cli_import_reports_and_refuses(data_dir, tmp_path, capsys):
    path = write(tmp_path / "runs.csv", RUNS)
    assert main(["import", "table", str(path), "--as", "process_runs", "--label", "yield"]) == 0
    assert "silver.process_runs: 3" in capsys.readouterr().out
    bad = write(tmp_path / "bad.csv", "unit_id,ts\nu1,2026-11-01T08:00:00Z\n")
    assert main(["import", "table", str(bad), "--as", "process_runs", "--label", "yield"]) == 2
    assert "missing columns ['yield']" in capsys.readouterr().err
    assert Lake().read(table("silver.process_runs")).height == 3


def test_many_images_import_in_one_commit_keeping_extra_columns(lake, tmp_path):
    # Enough files for the threaded decode; an extra label column ("kind") is kept.
    from mfg_assets.sim.hard_images import hard_set, write_folder

    frame = hard_set(40, 64, seed=3)
    labels = write_folder(frame, tmp_path / "imgs")
    report = import_images(lake, tmp_path / "imgs", labels)
    assert "extra label columns ['kind'] kept" in str(report)
    images = lake.read(table("silver.inspection_images"))
    assert images.height == 40
    assert lake.version(table("silver.inspection_images")) == 0  # one commit, not one per image
    # grayscale PNG files are stored as given, byte for byte
    assert sorted(images["png"].to_list()) == sorted(frame["png"].to_list())
    bronze = lake.read(table("bronze.inspection_images"))
    shape = pl.Struct({"attributes": pl.Struct({"kind": pl.String})})
    kinds = bronze.select(
        pl.col("payload").str.json_decode(shape).struct.field("attributes").struct.field("kind")
    ).to_series()
    assert sorted(kinds.drop_nulls().to_list()) == sorted(frame["kind"].drop_nulls().to_list())
    # the import types a payload without the image bytes and puts the bytes in afterwards:
    # a rebuild from bronze by the silver typer itself must give the very same rows
    name = "silver.inspection_images"
    rebuilt = refine(table(name), TYPERS[name][1](bronze), run_id="backfill").valid
    columns = [c for c in images.columns if c not in ("run_id", "silver_run_id", "refined_at")]
    key = ["image_id"]
    assert rebuilt.select(columns).sort(key).equals(images.select(columns).sort(key))


def test_a_bad_file_among_many_is_named_by_its_line(lake, tmp_path):
    from mfg_assets.sim.hard_images import hard_set, write_folder

    labels = write_folder(hard_set(30, 64, seed=4), tmp_path / "imgs")
    bad = pl.read_csv(labels)["file"][20]
    (tmp_path / "imgs" / bad).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ImportRefused, match=r"1 images cannot be imported: line 22: "):
        import_images(lake, tmp_path / "imgs", labels)
    assert not lake.exists(table("silver.inspection_images"))


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(yields=st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=40),
       extra=st.text(st.characters(categories=("L", "N")), min_size=1, max_size=12))
def test_any_export_without_ids_lands_every_row_once(tmp_path_factory, yields, extra):
    """Whatever the yields and whatever a parameter column is called (unicode included),
    every row of an export without unit_id/ts lands exactly once under its own unit."""
    from mfg_assets.lake.importers import PROCESS_KNOWN

    assume(extra not in (*PROCESS_KNOWN, "yield"))
    root = tmp_path_factory.mktemp("lake")
    lake = Lake(str(root / "lake"), {})
    frame = pl.DataFrame({"yield": yields, extra: [float(i) for i in range(len(yields))]})
    frame.write_parquet(root / "export.parquet")
    import_process_runs(lake, root / "export.parquet", label="yield")
    runs = lake.read(table("silver.process_runs"))
    assert runs.height == len(yields)
    assert runs.get_column("unit_id").n_unique() == len(yields)
