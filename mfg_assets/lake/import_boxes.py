"""Bounding boxes as labeling tools export them: COCO JSON and YOLO txt.

Both parsers return, per image file (its path as the labeling tool wrote it), a list of
``(class, x0, y0, x1, y1)`` in pixels. Anything malformed is refused with the file and the
line, so a person can open the file there: in COCO JSON, the line where the bad element
(an image, annotation or category) starts; in YOLO txt, the line of the bad box. A box
must have a known class, finite coordinates and a positive area, and lie within its image
(one pixel of slack: tools round).

- COCO: ``images`` (``id``, ``file_name``, ``width``, ``height``), ``annotations``
  (``image_id``, ``category_id``, ``bbox`` = ``[x, y, width, height]``), ``categories``
  (``id``, ``name``).
- YOLO: one ``<image stem>.txt`` per image in a folder, lines ``class cx cy w h``
  normalised to 0..1; class names from ``classes.txt`` (one per line) in that folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mfg_assets.lake.importers import ImportRefused

Box = tuple[str, float, float, float, float]
SLACK_PX = 1.0
FORMATS = ("coco", "yolo")


class BoxFileRefused(ImportRefused):
    """A box file cannot be read as given (the message names the file and the line)."""


# -- COCO --------------------------------------------------------------------------------------


def read_coco(path: Path) -> dict[str, list[Box]]:
    """file_name -> boxes in pixels (an image without annotations maps to [])."""
    path = Path(path)
    text = _read_text(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BoxFileRefused(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from None
    if not isinstance(doc, dict):
        raise BoxFileRefused(f"{path}:1: expected a COCO object with images, annotations, "
                             "categories")
    lines = _element_lines(text)
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise BoxFileRefused(f"{path}:{lines.get((key, None), 1)}: '{key}' must be a list")

    def where(key: str, k: int) -> str:
        return f"{path}:{lines.get((key, k), 1)}: {key}[{k}]"

    categories: dict[int, str] = {}
    for k, cat in enumerate(doc["categories"]):
        cid, name = _field(cat, "id", int, where("categories", k)), _field(
            cat, "name", str, where("categories", k))
        if cid in categories:
            raise BoxFileRefused(f"{where('categories', k)}: category id {cid} given twice")
        categories[cid] = name
    images: dict[int, tuple[str, float, float]] = {}
    out: dict[str, list[Box]] = {}
    for k, image in enumerate(doc["images"]):
        at = where("images", k)
        iid, name = _field(image, "id", int, at), _field(image, "file_name", str, at)
        width, height = _field(image, "width", int, at), _field(image, "height", int, at)
        if width <= 0 or height <= 0 or not name:
            raise BoxFileRefused(f"{at}: needs a file_name and a positive width and height")
        if iid in images or name in out:
            raise BoxFileRefused(f"{at}: image id {iid} / file {name!r} given twice")
        images[iid] = (name, float(width), float(height))
        out[name] = []
    for k, ann in enumerate(doc["annotations"]):
        at = where("annotations", k)
        iid, cid = _field(ann, "image_id", int, at), _field(ann, "category_id", int, at)
        if iid not in images:
            raise BoxFileRefused(f"{at}: image_id {iid} is not in 'images'")
        if cid not in categories:
            raise BoxFileRefused(f"{at}: category_id {cid} is not in 'categories'")
        bbox = ann.get("bbox") if isinstance(ann, dict) else None
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
            raise BoxFileRefused(f"{at}: 'bbox' must be four numbers [x, y, width, height]")
        x, y, w, h = (float(v) for v in bbox)
        name, width, height = images[iid]
        out[name].append(_checked((categories[cid], x, y, x + w, y + h), width, height, at))
    return out


def _field(obj: Any, key: str, kind: type, at: str) -> Any:
    value = obj.get(key) if isinstance(obj, dict) else None
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise BoxFileRefused(f"{at}: '{key}' must be {'an integer' if kind is int else 'text'}")
    return value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _element_lines(text: str) -> dict[tuple[str, int | None], int]:
    """(top-level key, element index) -> the line it starts on ((key, None): the key's value).

    Walks the top-level object and its arrays with the stdlib decoder's ``raw_decode``,
    so positions come from the same parser that read the document.
    """
    decoder = json.JSONDecoder()
    lines: dict[tuple[str, int | None], int] = {}

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n,:":
            i += 1
        return i

    def line_of(i: int) -> int:
        return text.count("\n", 0, i) + 1

    i = skip(0)
    if i >= len(text) or text[i] != "{":
        return lines
    i = skip(i + 1)
    while i < len(text) and text[i] != "}":
        key, i = decoder.raw_decode(text, i)
        i = skip(i)
        lines[(str(key), None)] = line_of(i)
        if text[i] == "[":
            j, k = skip(i + 1), 0
            while j < len(text) and text[j] != "]":
                lines[(str(key), k)] = line_of(j)
                _, j = decoder.raw_decode(text, j)
                j, k = skip(j), k + 1
            i = j + 1
        else:
            _, i = decoder.raw_decode(text, i)
        i = skip(i)
    return lines


# -- YOLO --------------------------------------------------------------------------------------


def read_yolo_classes(folder: Path) -> list[str]:
    path = Path(folder) / "classes.txt"
    names = [line.strip() for line in _read_text(path).splitlines()]
    for number, name in enumerate(names, start=1):
        if not name:
            raise BoxFileRefused(f"{path}:{number}: empty class name")
    if not names or len(set(names)) != len(names):
        raise BoxFileRefused(f"{path}:1: class names must be present and distinct")
    return names


def read_yolo_file(path: Path, classes: list[str]) -> list[tuple[str, float, float, float, float]]:
    """One YOLO label file -> ``(class, cx, cy, w, h)`` normalised (checked to lie in 0..1)."""
    out = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        at = f"{path}:{number}"
        if len(fields) != 5:
            raise BoxFileRefused(f"{at}: expected 'class cx cy w h', got {len(fields)} fields")
        try:
            index = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError:
            raise BoxFileRefused(f"{at}: class must be an integer and cx cy w h numbers") from None
        if not 0 <= index < len(classes):
            raise BoxFileRefused(f"{at}: class {index} is not in classes.txt "
                                 f"(0..{len(classes) - 1})")
        if not all(math.isfinite(v) for v in (cx, cy, w, h)) or w <= 0 or h <= 0:
            raise BoxFileRefused(f"{at}: cx cy w h must be finite, w and h positive")
        if cx - w / 2 < -0.01 or cy - h / 2 < -0.01 or cx + w / 2 > 1.01 or cy + h / 2 > 1.01:
            raise BoxFileRefused(f"{at}: box leaves the image (coordinates are fractions 0..1)")
        out.append((classes[index], cx, cy, w, h))
    return out


def yolo_to_pixels(boxes: list[tuple[str, float, float, float, float]], width: int,
                   height: int) -> list[Box]:
    return [(c, (cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
             (cy + h / 2) * height) for c, cx, cy, w, h in boxes]


def read_yolo(folder: Path, files: list[str], sizes: list[tuple[int, int]]) -> dict[str, list[Box]]:
    """Boxes of each image file from ``<folder>/<file stem>.txt`` (no file: no boxes)."""
    folder = Path(folder)
    classes = read_yolo_classes(folder)
    out = {}
    for name, (width, height) in zip(files, sizes, strict=True):
        label = folder / (Path(name).stem + ".txt")
        boxes = read_yolo_file(label, classes) if label.is_file() else []
        out[name] = yolo_to_pixels(boxes, width, height)
    return out


# -- shared ------------------------------------------------------------------------------------


def read_boxes(path: Path, fmt: str, files: list[str], sizes: list[tuple[int, int]]
               ) -> list[list[Box]]:
    """Boxes per listed image file, in order (COCO by file name or base name; YOLO by stem).
    A COCO image whose size differs from the file's own is refused."""
    if fmt == "yolo":
        found = read_yolo(path, files, sizes)
        return [found[name] for name in files]
    if fmt != "coco":
        raise BoxFileRefused(f"{path}: box format {fmt!r}: one of {', '.join(FORMATS)}")
    found = read_coco(path)
    by_base = {Path(name).name: boxes for name, boxes in found.items()}
    out = []
    for name, (width, height) in zip(files, sizes, strict=True):
        boxes = found.get(name, by_base.get(Path(name).name, []))
        for cls, _x0, _y0, x1, y1 in boxes:
            if x1 > width + SLACK_PX or y1 > height + SLACK_PX:
                raise BoxFileRefused(f"{path}: a {cls} box of {name} leaves its "
                                     f"{width}x{height} image")
        out.append(boxes)
    return out


def boxes_json(boxes: list[Box]) -> str:
    """The lake's box column: ``[[class, x0, y0, x1, y1], ...]`` (pixels, 2 decimals)."""
    return json.dumps([[c, *(round(float(v), 2) for v in xy)] for c, *xy in boxes],
                      separators=(",", ":"))


def _checked(box: Box, width: float, height: float, at: str) -> Box:
    _cls, x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        raise BoxFileRefused(f"{at}: box has no area")
    if x0 < -SLACK_PX or y0 < -SLACK_PX or x1 > width + SLACK_PX or y1 > height + SLACK_PX:
        raise BoxFileRefused(f"{at}: box leaves its {width:g}x{height:g} image")
    return box


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BoxFileRefused(f"{path}:0: no such file") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise BoxFileRefused(f"{path}:0: unreadable ({exc})") from None


# -- into the lake -----------------------------------------------------------------------------


def land_boxes(lake: Any, path: Path, images: Any, boxes: list[list[Box]], fmt: str,
               window: Any, report: Any) -> None:
    """Land the boxes of imported images as bronze messages (``bronze.image_boxes``, one per
    image: the image messages' place, camera and time) typed into silver.image_boxes, the way
    every import lands; rows silver already has are skipped. Adds to ``report``."""
    import polars as pl

    from mfg_assets.lake.importers import _digest, _land

    payload = pl.DataFrame({
        "timestamp": images.get_column("event_time").dt.epoch("ms"),
        "imageId": images.get_column("payload").str.json_decode(
            pl.Struct({"imageId": pl.String})).struct.field("imageId"),
        "format": [fmt] * images.height,
        "boxes": [boxes_json(b) for b in boxes],
    }).select(pl.struct(pl.all()).struct.json_encode().alias("payload"))["payload"]
    topic = pl.col("topic").str.replace(r"/inspection$", "/boxes")
    rows = images.with_columns(payload.alias("payload"), pl.lit("import/boxes").alias("channel"))
    rows = rows.with_columns(topic.alias("topic")).with_columns(
        pl.concat_str([pl.col("topic"), pl.col("payload")]).map_elements(
            _digest, return_dtype=pl.String).alias("message_id"))
    landed = _land(lake, path, "bronze.image_boxes", ["silver.image_boxes"], rows, window)
    report.rows_written.update(landed.rows_written)
    report.notes.append(f"boxes: batch {landed.batch_id}")
