"""Imports refuse, naming the file and lines and writing nothing: conflicting duplicate keys,
decompression bombs, label paths leaving the image folder, implausible timestamps."""

from __future__ import annotations

import os
import re
import struct
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mfg_assets.lake.delta import Lake
from mfg_assets.lake.importers import (
    ImportRefused,
    import_images,
    import_process_runs,
    import_sensor_readings,
)
from mfg_assets.lake.registry import table
from mfg_assets_tests.lake.test_importers import versions, write

FIXTURE_OK = [HealthCheck.function_scoped_fixture]


# -- conflicting keys -------------------------------------------------------------------


def test_duplicated_unit_with_two_yields_is_refused_naming_the_lines(lake, tmp_path):
    before = versions(lake)
    path = write(tmp_path / "runs.csv", "unit_id,ts,yield\n"
                 "u1,2026-11-01T08:00:00Z,95\nu2,2026-11-01T08:01:00Z,91\n"
                 "u1,2026-11-01T08:00:00Z,60\n")
    with pytest.raises(ImportRefused, match=r"unit_id=u1 on lines \[2, 4\] \(differing: yield\)"):
        import_process_runs(lake, path, label="yield")
    assert versions(lake) == before


def test_exact_repeated_lines_are_one_unit(lake, tmp_path):
    path = write(tmp_path / "runs.csv", "unit_id,ts,yield\n"
                 "u1,2026-11-01T08:00:00Z,95\nu1,2026-11-01T08:00:00Z,95\n")
    import_process_runs(lake, path, label="yield")
    assert lake.read(table("silver.process_runs")).height == 1


def test_same_unit_at_two_sites_is_two_units(lake, tmp_path):
    path = write(tmp_path / "runs.csv", "unit_id,ts,yield,site\n"
                 "u1,2026-11-01T08:00:00Z,95,detroit\nu1,2026-11-01T08:00:00Z,60,munich\n")
    import_process_runs(lake, path, label="yield")
    runs = lake.read(table("silver.process_runs")).sort("site")
    assert runs.select("site", "yield_pct").rows() == [("detroit", 95.0), ("munich", 60.0)]


def test_conflicting_sensor_lines_are_refused(lake, tmp_path):
    before = versions(lake)
    path = write(tmp_path / "s.csv", "machine_id,sensor,ts,value\n"
                 "m,t,2026-11-01T08:00:00Z,1.0\nm,t,2026-11-01T08:00:00Z,2.0\n")
    with pytest.raises(ImportRefused, match=r"lines \[2, 3\] \(differing: value\)"):
        import_sensor_readings(lake, path)
    assert versions(lake) == before


def test_reimport_with_another_value_for_a_known_key_is_refused(lake, tmp_path):
    import_process_runs(lake, write(tmp_path / "a.csv", "unit_id,ts,yield\n"
                                    "u1,2026-11-01T08:00:00Z,95\n"), label="yield")
    before = versions(lake)
    with pytest.raises(ImportRefused, match="silver.process_runs already holds with other"):
        import_process_runs(lake, write(tmp_path / "b.csv", "unit_id,ts,yield\n"
                                        "u1,2026-11-01T08:00:00Z,50\n"), label="yield")
    assert versions(lake) == before


# -- decompression bombs ----------------------------------------------------------------


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels but holds almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@settings(max_examples=15, deadline=None, suppress_health_check=FIXTURE_OK)
@given(width=st.integers(10_000, 60_000), factor=st.floats(1.05, 6.0))
def test_decompression_bombs_are_refused_warning_or_error(lake, tmp_path, width, factor):
    # pixels between MAX_IMAGE_PIXELS and twice it: Pillow only warns; above: it raises
    height = int(Image.MAX_IMAGE_PIXELS * factor / width) + 1
    folder = tmp_path / "bomb"
    folder.mkdir(exist_ok=True)
    (folder / "bomb.png").write_bytes(png_header_only(width, height))
    Image.new("L", (16, 16)).save(folder / "fine.png")
    labels = write(tmp_path / "labels.csv", "file,label\nfine.png,ok\nbomb.png,ok\n")
    before = versions(lake)
    with pytest.raises(ImportRefused, match=r"line 3: bomb.png: refused as a decompression bomb"):
        import_images(lake, folder, labels)
    assert versions(lake) == before


# -- label paths ------------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """An image folder, and a secret image beside it (outside the folder)."""
    (tmp_path / "imgs").mkdir()
    Image.new("L", (16, 16)).save(tmp_path / "imgs" / "ok.png")
    Image.new("L", (16, 16), color=200).save(tmp_path / "secret.png")
    return tmp_path


def test_absolute_dotdot_and_symlink_paths_are_refused(lake, outside):
    folder = outside / "imgs"
    os.symlink(outside / "secret.png", folder / "link.png")
    labels = write(outside / "labels.csv", "file,label\nok.png,ok\n"
                   f"{outside / 'secret.png'},ok\n../secret.png,ok\nlink.png,ok\n")
    before = versions(lake)
    with pytest.raises(ImportRefused) as refused:
        import_images(lake, folder, labels)
    text = str(refused.value)
    assert str(labels) in text and "3 image paths leave the image folder" in text
    assert "line 3:" in text and "line 4: '../secret.png'" in text and "line 5: 'link.png'" in text
    assert "line 2" not in text
    assert versions(lake) == before


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)
@given(st.lists(st.sampled_from(["..", ".", "imgs", "x"]), min_size=1, max_size=5))
def test_generated_paths_land_only_inside_the_folder(lake, outside, parts):
    name = "/".join([*parts, "secret.png"])
    folder = outside / "imgs"
    inside = (folder / name).resolve().is_relative_to(folder.resolve())
    labels = write(outside / "gen.csv", f"file,label\n{name},ok\n")
    try:
        import_images(lake, folder, labels)
    except ImportRefused as exc:
        # inside but missing is "no such file"; outside must be named as leaving the folder
        assert ("leave the image folder" in str(exc)) is not inside
    else:
        raise AssertionError(f"{name} was imported")  # secret.png exists only outside


# -- timestamps -------------------------------------------------------------------------


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00Z", "9999-12-31T00:00:00Z",
                                "1970-01-01T00:00:00Z"])
def test_timestamps_outside_the_plausible_window_are_refused(lake, tmp_path, ts):
    before = versions(lake)
    path = write(tmp_path / "runs.csv", f"unit_id,ts,yield\nu1,2026-11-01T08:00:00Z,95\n"
                 f"u2,{ts},95\n")
    with pytest.raises(ImportRefused, match=re.escape("outside the plausible window")) as refused:
        import_process_runs(lake, path, label="yield")
    assert "on lines [3]" in str(refused.value) and str(path) in str(refused.value)
    assert versions(lake) == before


@settings(max_examples=20, deadline=None, suppress_health_check=FIXTURE_OK)
@given(st.one_of(
    st.datetimes(datetime(1, 1, 2), datetime(1999, 12, 31), timezones=st.just(UTC)),
    st.datetimes(datetime.now() + timedelta(days=2), datetime(9999, 12, 30),
                 timezones=st.just(UTC)),
))
def test_generated_implausible_sensor_times_are_refused(lake, tmp_path, when):
    path = write(tmp_path / "s.csv", "machine_id,sensor,ts,value\n"
                 f"m,t,{when.strftime('%Y-%m-%dT%H:%M:%S')}Z,1.0\n")
    with pytest.raises(ImportRefused, match="outside the plausible window"):
        import_sensor_readings(lake, path)
    assert not Lake(lake.root, {}).exists(table("silver.sensor_readings"))


def test_cli_window_is_configurable_and_refusals_write_nothing(data_dir, tmp_path, capsys):
    from mfg_assets.cli import main

    path = write(tmp_path / "old.csv", "unit_id,ts,yield\nu1,1995-06-01T08:00:00Z,95\n")
    args = ["import", "table", str(path), "--as", "process_runs", "--label", "yield"]
    assert main(args) == 2
    assert "outside the plausible window" in capsys.readouterr().err
    assert not Lake().exists(table("silver.process_runs"))
    assert main([*args, "--earliest", "1990-01-01"]) == 0
    assert Lake().read(table("silver.process_runs")).height == 1
