"""Boxes from labeling tools (COCO JSON, YOLO txt): parsed to pixels, malformed files refused
with the file and line, and `mfg import images --boxes` lands them next to the images."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mfg_assets.cli import main
from mfg_assets.lake.import_boxes import (
    BoxFileRefused,
    read_boxes,
    read_coco,
    read_yolo,
    read_yolo_file,
)
from mfg_assets.lake.importers import ImportRefused, import_images
from mfg_assets.lake.registry import table
from mfg_assets.ml.features import assembly_images

COCO = {
    "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30},
               {"id": 2, "file_name": "sub/b.png", "width": 40, "height": 30}],
    "annotations": [
        {"id": 10, "image_id": 1, "category_id": 7, "bbox": [2, 3, 10, 5]},
        {"id": 11, "image_id": 1, "category_id": 8, "bbox": [20.5, 10, 4, 4]},
    ],
    "categories": [{"id": 7, "name": "chip"}, {"id": 8, "name": "capacitor"}],
}


def coco_file(tmp_path: Path, doc: object, name: str = "boxes.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc, indent=2))
    return path


def test_coco_boxes_in_pixels(tmp_path):
    found = read_coco(coco_file(tmp_path, COCO))
    assert found == {"a.png": [("chip", 2.0, 3.0, 12.0, 8.0),
                               ("capacitor", 20.5, 10.0, 24.5, 14.0)],
                     "sub/b.png": []}


def test_yolo_boxes_in_pixels(tmp_path):
    (tmp_path / "classes.txt").write_text("chip\ncapacitor\n")
    (tmp_path / "a.txt").write_text("1 0.5 0.5 0.25 0.5\n\n0 0.1 0.2 0.2 0.2\n")
    found = read_yolo(tmp_path, ["a.png", "none.png"], [(40, 20), (40, 20)])
    assert found["none.png"] == []
    expected = [("capacitor", 15.0, 5.0, 25.0, 15.0), ("chip", 0.0, 2.0, 8.0, 6.0)]
    assert [b[0] for b in found["a.png"]] == [b[0] for b in expected]
    assert np.allclose([b[1:] for b in found["a.png"]], [b[1:] for b in expected])


# -- malformed files: refused, naming the file and the line -------------------------------------

FIXTURE = [HealthCheck.function_scoped_fixture]  # tmp_path is reused: each example rewrites
LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): ")

BAD_ANNOTATIONS = st.one_of(
    st.fixed_dictionaries({"image_id": st.just(1), "category_id": st.just(7),
                           "bbox": st.lists(st.floats(allow_nan=True), max_size=6)
                           .filter(lambda b: len(b) != 4 or any(v != v for v in b))}),
    st.fixed_dictionaries({"image_id": st.integers().filter(lambda i: i not in (1, 2)),
                           "category_id": st.just(7), "bbox": st.just([1, 1, 2, 2])}),
    st.fixed_dictionaries({"image_id": st.just(1), "category_id": st.integers()
                           .filter(lambda i: i not in (7, 8)), "bbox": st.just([1, 1, 2, 2])}),
    st.fixed_dictionaries({"image_id": st.just(1), "category_id": st.just(7),
                           "bbox": st.tuples(st.floats(-50, 50), st.floats(-50, 50),
                                             st.floats(-5, 0), st.floats(1, 5)).map(list)}),
    st.fixed_dictionaries({"image_id": st.just(1), "category_id": st.just(7),
                           "bbox": st.tuples(st.floats(41.5, 1e6), st.floats(0, 5),
                                             st.floats(1, 5), st.floats(1, 5)).map(list)}),
    st.fixed_dictionaries({"image_id": st.text(max_size=3), "category_id": st.just(7),
                           "bbox": st.just([1, 1, 2, 2])}),
)


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE)
@given(bad=BAD_ANNOTATIONS, at=st.integers(0, 2))
def test_a_bad_coco_annotation_is_refused_at_its_line(tmp_path, bad, at):
    doc = json.loads(json.dumps(COCO))
    doc["annotations"].insert(at, bad)
    path = coco_file(tmp_path, doc)
    with pytest.raises(BoxFileRefused) as refused:
        read_coco(path)
    where = LINE.match(str(refused.value))
    assert where and where["file"] == str(path)
    line = path.read_text().splitlines()[int(where["line"]) - 1]
    # the line that starts the offending annotation: an opening brace in the annotations list
    assert line.strip() == "{", (str(refused.value), line)
    assert f"annotations[{at}]" in str(refused.value)


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE)
@given(text=st.text(max_size=80))
def test_text_that_is_not_coco_is_refused_with_a_line(tmp_path, text):
    path = tmp_path / "junk.json"
    path.write_text(text, encoding="utf-8")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and all(isinstance(doc.get(k), list) and not doc[k]
                                     for k in ("images", "annotations", "categories")):
        return  # an empty COCO file is valid
    with pytest.raises(BoxFileRefused) as refused:
        read_coco(path)
    where = LINE.match(str(refused.value))
    assert where and where["file"] == str(path)
    lines = path.read_text(encoding="utf-8").count("\n") + 1  # as read: \r is a line end
    assert 1 <= int(where["line"]) <= lines


YOLO_BAD_LINES = st.one_of(
    st.lists(st.sampled_from(["0", "0.5", "x"]), max_size=7).filter(lambda f: len(f) != 5)
    .map(" ".join).filter(str.strip),
    st.tuples(st.integers().filter(lambda i: i not in (0, 1)), st.just("0.5 0.5 0.1 0.1"))
    .map(lambda t: f"{t[0]} {t[1]}"),
    st.sampled_from(["0 nan 0.5 0.1 0.1", "0 0.5 0.5 0 0.1", "0 0.5 0.5 0.1 -1",
                     "0 0.95 0.5 0.2 0.1", "1.5 0.5 0.5 0.1 0.1", "0 0.5 inf 0.1 0.1"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE)
@given(bad=YOLO_BAD_LINES, before=st.integers(0, 3))
def test_a_bad_yolo_line_is_refused_with_its_number(tmp_path, bad, before):
    path = tmp_path / "a.txt"
    good = ["0 0.5 0.5 0.2 0.2"] * before
    path.write_text("\n".join([*good, bad, "1 0.3 0.3 0.1 0.1"]) + "\n")
    with pytest.raises(BoxFileRefused, match=rf"^{re.escape(str(path))}:{before + 1}: "):
        read_yolo_file(path, ["chip", "capacitor"])


def test_a_coco_box_outside_the_real_image_is_refused(tmp_path):
    path = coco_file(tmp_path, COCO)
    with pytest.raises(BoxFileRefused, match="leaves its 20x20 image"):
        read_boxes(path, "coco", ["a.png"], [(20, 20)])


# -- into the lake ------------------------------------------------------------------------------


def _images(folder: Path) -> Path:
    folder.mkdir()
    (folder / "sub").mkdir()
    for name in ("a.png", "sub/b.png"):
        Image.fromarray(np.full((30, 40), 90, np.uint8)).save(folder / name)
    labels = folder.parent / "labels.csv"
    labels.write_text("file,label,ts,camera\na.png,ok,2026-01-02T00:00:00Z,asm1\n"
                      "sub/b.png,ok,2026-01-02T00:01:00Z,asm1\n")
    return labels


def test_import_images_with_coco_boxes_lands_them_and_feeds_the_detection_features(
        lake, tmp_path):
    labels = _images(tmp_path / "imgs")
    boxes = coco_file(tmp_path, COCO)
    code = main(["import", "images", str(tmp_path / "imgs"), "--labels", str(labels),
                 "--boxes", str(boxes), "--box-format", "coco"])
    assert code == 0
    rows = lake.read(table("silver.image_boxes")).sort("ts")
    assert lake.read(table("bronze.image_boxes")).height == 2  # bronze keeps them (backfills)
    assert rows.height == 2 and set(rows.get_column("camera_id")) == {"asm1"}
    first = json.loads(rows.get_column("boxes")[0])
    assert first == [["chip", 2.0, 3.0, 12.0, 8.0], ["capacitor", 20.5, 10.0, 24.5, 14.0]]
    # the same import again writes no duplicate boxes
    report = import_images(lake, tmp_path / "imgs", labels, boxes=boxes)
    assert report.rows_written["silver.image_boxes"] == 0
    features = assembly_images(lake.read(table("silver.inspection_images")), rows)
    table("features.assembly_images").schema.validate(features)
    assert features.height == 2 and features.get_column("missing").null_count() == 2


def test_import_with_a_malformed_box_file_writes_nothing(lake, tmp_path):
    labels = _images(tmp_path / "imgs")
    (tmp_path / "yolo").mkdir()
    (tmp_path / "yolo" / "classes.txt").write_text("chip\n")
    (tmp_path / "yolo" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2 0.2\n")
    with pytest.raises(ImportRefused, match=r"a\.txt:2: class 3"):
        import_images(lake, tmp_path / "imgs", labels, boxes=tmp_path / "yolo",
                      box_format="yolo")
    assert not lake.exists(table("silver.inspection_images"))
    assert not lake.exists(table("silver.image_boxes"))
