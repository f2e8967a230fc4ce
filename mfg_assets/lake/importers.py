"""Bring your own data: CSV/Parquet tables and labelled image folders into the lakehouse.

An import goes the way a UNS message goes: each row becomes a bronze message (source
``import``, payload in the UNS JSON shape), is typed by the same silver typers and checked
by the same pandera schemas, and lands in silver. Bronze keeps the rows, so rebuilding a
silver day partition from bronze (a backfill) reproduces the imported rows instead of
dropping them.

Everything is validated before anything is written: a missing or mistyped column, an
unreadable image (or a decompression bomb), a label path outside the image folder, a
timestamp outside the plausible window, two lines with one key but different values, or a
row the silver schema refuses raises :class:`ImportRefused` naming the file and the lines,
and the lakehouse is left untouched. A re-import of the same rows writes no duplicates to
silver (rows whose key is already there with the same values are skipped; the same key
with other values is refused).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import TableSpec, table
from mfg_assets.lake.silver import (
    DEFAULT_WINDOW,
    TYPERS,
    PlausibleWindow,
    refine,
    value_columns,
)

SOURCE = "import"
# on_progress(phase, done, total): the import's progress, for a bar (`mfg import`)
OnProgress = Callable[[str, int, int], None]
PLACE = ("site", "area", "line", "cell")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_KNOWN = ("file", "label", "ts", "camera", "unit_id", "image_id", "edge", *PLACE)
PROCESS_KNOWN = ("unit_id", "ts", "machine_id", "product", "material_lot", *PLACE)
SENSOR_KNOWN = ("machine_id", "ts", "machine_type", "unit", *PLACE)
PASS_TRUE = {"true", "1", "pass", "passed", "ok", "good", "yes"}
PASS_FALSE = {"false", "0", "fail", "failed", "nok", "ng", "bad", "scrap", "no"}


class ImportRefused(ValueError):
    """The input cannot be imported as given; nothing was written."""


@dataclass
class ImportReport:
    batch_id: str
    file: str
    rows_written: dict[str, int] = field(default_factory=dict)  # table -> rows
    skipped_existing: int = 0  # rows whose key silver already had (a re-import)
    days: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        written = ", ".join(f"{name}: {rows}" for name, rows in self.rows_written.items())
        text = f"{self.file}: batch {self.batch_id}; wrote {written or 'nothing'}"
        if self.skipped_existing:
            text += f"; {self.skipped_existing} rows already present"
        if self.days:
            text += f"; days {self.days[0]}..{self.days[-1]}"
        return "; ".join([text, *self.notes])


# -- tables ------------------------------------------------------------------------------


def read_table(path: Path) -> pl.DataFrame:
    """A CSV or Parquet file as a frame; anything else (or an unreadable file) is refused."""
    path = Path(path)
    if not path.is_file():
        raise ImportRefused(f"{path}: no such file")
    try:
        if path.suffix.lower() == ".csv":
            return pl.read_csv(path, infer_schema_length=None, try_parse_dates=False)
        if path.suffix.lower() in (".parquet", ".pq"):
            return pl.read_parquet(path)
    except Exception as exc:
        raise ImportRefused(f"{path}: cannot read it as {path.suffix[1:]}: {exc}") from exc
    raise ImportRefused(f"{path}: expected a .csv or .parquet file")


def import_process_runs(
    lake: Lake,
    path: Path,
    label: str,
    pass_threshold: float = 90.0,
    enterprise: str | None = None,
    ignore: Sequence[str] = (),
    window: PlausibleWindow = DEFAULT_WINDOW,
    on_progress: OnProgress | None = None,
) -> ImportReport:
    """One row per produced unit into silver.process_runs (+ process_parameters).

    Required: the ``label`` column. The label is either a yield in percent (numeric,
    0..100; ``passed`` = yield >= ``pass_threshold``) or a pass/fail flag (bool, 0/1,
    pass/fail, ok/nok; yield is then 100 or 0). Optional: unit_id (default: the row number),
    ts (default: the import time for every row, which is no time axis, so training splits
    stratified instead of by time), machine_id, product, material_lot, site, area, line,
    cell. Every other column is a process parameter and must be numeric (``ignore`` drops
    columns on purpose).
    """
    frame = read_table(path).drop([c for c in ignore if c], strict=False)
    _require(frame, [label], path)
    frame, derived = _derive_unit_and_time(frame)
    ts = _timestamps(frame, "ts", path, window)
    _refuse_conflicts(frame.with_columns(ts), [*_present(frame, PLACE), "unit_id"], path)
    passed, yield_pct = _label(frame, label, pass_threshold, path)
    parameters = [c for c in frame.columns if c not in (*PROCESS_KNOWN, label)]
    values = {name: _numeric(frame, name, path, hint="a process parameter") for name in parameters}
    payload = pl.DataFrame({
        "timestamp": ts.dt.epoch("ms"),
        "unitId": _text(frame, "unit_id"),
        "product": _text(frame, "product"),
        "materialLot": _text(frame, "material_lot"),
        "yield": yield_pct,
        "passed": passed,
    })
    if values:
        params = pl.DataFrame(values).select(pl.struct(pl.all()).alias("parameters"))
        payload = payload.with_columns(params.get_column("parameters"))
    machine = _text(frame, "machine_id").fill_null("import")
    bronze = _bronze_rows(frame, ts, machine, payload, "processdata", enterprise)
    report = _land(lake, path, "bronze.process_runs",
                   ["silver.process_runs", "silver.process_parameters"], bronze, window,
                   on_progress=on_progress)
    report.notes.extend(derived)
    return report


def _derive_unit_and_time(frame: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """A process export without ``unit_id``/``ts``: units numbered by row order, and every
    row stamped with the import time (one instant: the split logic sees no time axis and
    stratifies, instead of inventing an order the plant never recorded). Notes say so."""
    notes = []
    if "unit_id" not in frame.columns:
        frame = frame.with_row_index("unit_id", offset=1).with_columns(
            pl.format("row-{}", pl.col("unit_id")).alias("unit_id"))
        notes.append(f"no unit_id column: units numbered by row order (row-1..row-{frame.height})")
    if "ts" not in frame.columns:
        now = datetime.now(UTC).replace(microsecond=0)
        frame = frame.with_columns(pl.lit(now).alias("ts"))
        notes.append(f"no ts column: every row stamped with the import time {now.isoformat()} "
                     "(not a time axis: training splits stratified, not by time)")
    return frame, notes


def import_sensor_readings(
    lake: Lake,
    path: Path,
    enterprise: str | None = None,
    ignore: Sequence[str] = (),
    window: PlausibleWindow = DEFAULT_WINDOW,
    on_progress: OnProgress | None = None,
) -> ImportReport:
    """Sensor readings into silver.sensor_readings, long or wide.

    Long form: ``machine_id, sensor, ts, value`` (optional ``unit``). Wide form:
    ``machine_id, ts`` and one numeric column per sensor. Optional in both: machine_type,
    site, area, line, cell.
    """
    frame = read_table(path).drop([c for c in ignore if c], strict=False)
    long_form = "sensor" in frame.columns or "value" in frame.columns
    _require(frame, ["machine_id", "ts", *(("sensor", "value") if long_form else ())], path)
    ts = _timestamps(frame, "ts", path, window)
    key = [*_present(frame, PLACE), "machine_id", *(("sensor",) if long_form else ()), "ts"]
    _refuse_conflicts(frame.with_columns(ts), key, path)
    if long_form:
        extra = [c for c in frame.columns if c not in (*SENSOR_KNOWN, "sensor", "value")]
        if extra:
            raise ImportRefused(f"{path}: long form (machine_id, sensor, ts, value) has "
                                f"unexpected columns {extra}; drop them or use --ignore")
        long = frame.with_columns(ts.alias("ts"), _numeric(frame, "value", path).alias("value"),
                                  _text(frame, "sensor").alias("sensor"),
                                  _text(frame, "unit").alias("unit"))
    else:
        sensors = [c for c in frame.columns if c not in SENSOR_KNOWN]
        if not sensors:
            raise ImportRefused(f"{path}: wide form needs sensor columns besides "
                                f"{[c for c in frame.columns if c in SENSOR_KNOWN]}; or give "
                                "long form with columns sensor and value")
        wide = frame.with_columns(
            ts.alias("ts"), *(_numeric(frame, c, path, hint="a sensor").alias(c) for c in sensors)
        )
        index = [c for c in frame.columns if c in SENSOR_KNOWN]
        long = wide.unpivot(index=index, on=sensors, variable_name="sensor", value_name="value")
        long = long.filter(pl.col("value").is_not_null()).with_columns(
            pl.lit(None, pl.String).alias("unit")
        )
    long = long.with_columns(
        _text(long, "machine_id").alias("machine_id"),
        _text(long, "machine_type").fill_null("unknown").alias("machine_type"),
        *(_text(long, c).alias(c) for c in PLACE),
    )
    # one UNS message per machine and timestamp, as a plant's sensors topic would carry
    reading = pl.struct("sensor", "value", "unit")
    messages = long.group_by("machine_id", "ts", "machine_type", *PLACE, maintain_order=True).agg(
        reading.alias("readings")
    )
    payload = messages.select(
        pl.col("ts").dt.epoch("ms").alias("timestamp"),
        pl.col("machine_type").alias("machineType"),
        "readings",
    )
    bronze = _bronze_rows(messages, messages["ts"], messages["machine_id"], payload, "sensors",
                          enterprise)
    return _land(lake, path, "bronze.sensor_readings", ["silver.sensor_readings"], bronze, window,
                 on_progress=on_progress)


# -- images ------------------------------------------------------------------------------


def import_images(
    lake: Lake,
    directory: Path,
    labels: Path,
    enterprise: str | None = None,
    window: PlausibleWindow = DEFAULT_WINDOW,
    boxes: Path | None = None,
    box_format: str = "coco",
    on_progress: OnProgress | None = None,
) -> ImportReport:
    """Labelled inspection images (PNG/JPEG, any size) into silver.inspection_images.

    ``boxes``: part boxes (a COCO JSON file, or a YOLO folder with ``classes.txt``) into
    silver.image_boxes (``mfg_assets.lake.import_boxes``), checked before anything is written.

    ``labels`` (CSV/Parquet) needs ``file`` (path relative to ``directory``) and ``label``
    (empty for unlabelled). Optional: ts (default: the file's modification time), camera
    (default ``import``), unit_id, image_id (default: a hash of path and bytes), site, area,
    line, cell, and ``edge`` — stored as the cell when no cell is given, since an edge serves
    one cell. Images are stored as grayscale PNG at their own size. A ``file`` must
    resolve inside ``directory`` (no absolute paths, no ``..``, no symlink leading out).

    ``on_progress(phase, done, total)``: images decoded (``decoding images``, one call per
    image), then the steps of the landing (typing and writing each table).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ImportRefused(f"{directory}: no such folder")
    frame = read_table(labels)
    _require(frame, ["file", "label"], labels)
    files = _text(frame, "file")
    if files.null_count():
        rows = (files.is_null().arg_true() + 2).to_list()[:5]  # +2: header line, 1-based
        raise ImportRefused(f"{labels}: column 'file' is empty on lines {rows}")
    _refuse_outside(directory, files, labels)
    pngs, sizes, digests, mtimes, errors = [], [], [], [], []
    decoded = _decode_all(directory, files.to_list(), on_progress)
    for line, result in enumerate(decoded, start=2):
        if isinstance(result, ImportRefused):  # line 1 is the header
            errors.append(f"line {line}: {result}")
            continue
        png, size, digest, mtime = result
        pngs.append(png)
        sizes.append(size)
        digests.append(digest)
        mtimes.append(mtime)
    if errors:
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise ImportRefused(f"{labels}: {len(errors)} images cannot be imported: "
                            + "; ".join(errors[:5]) + more)
    if boxes is not None:
        from mfg_assets.lake.import_boxes import land_boxes, read_boxes
        found = read_boxes(Path(boxes), box_format, files.to_list(), sizes)
    if "ts" in frame.columns:
        ts = _timestamps(frame, "ts", labels, window)
    else:
        ts = pl.Series("ts", mtimes, dtype=pl.Datetime("us", "UTC"))
        _refuse_implausible(frame.with_columns(ts.alias("mtime")), ts, "mtime", labels, window)
    if "cell" not in frame.columns and "edge" in frame.columns:
        frame = frame.with_columns(pl.col("edge").alias("cell"))
    image_id = pl.select(
        pl.coalesce(_text(frame, "image_id"), pl.Series(digests, dtype=pl.String))
    ).to_series()
    _refuse_conflicts(
        frame.with_columns(ts, image_id.alias("image_id")).drop("file"),
        [*_present(frame, PLACE), "image_id"],
        labels,
    )
    camera = _text(frame, "camera").fill_null("import")
    payload = pl.DataFrame({
        "timestamp": ts.dt.epoch("ms"),
        "imageId": image_id,
        "unitId": _text(frame, "unit_id"),
        "width": [w for w, _ in sizes],
        "height": [h for _, h in sizes],
        "data": [base64.b64encode(png).decode("ascii") for png in pngs],
        "label": _text(frame, "label"),
    })
    extra = [c for c in frame.columns if c not in IMAGE_KNOWN]
    if extra:  # kept, as text, in the bronze message (silver has no column for them)
        payload = payload.with_columns(
            frame.select(pl.struct(pl.col(extra).cast(pl.String)).alias("attributes"))
            .get_column("attributes")
        )
    bronze = _bronze_rows(frame, ts, camera, payload, "inspection", enterprise)
    light = (_payload_text(payload.drop("data")), "png", pl.Series("png", pngs, pl.Binary))
    listed = {Path(name).as_posix() for name in files}
    unlisted = [
        p for p in directory.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.relative_to(directory).as_posix() not in listed
    ]
    report = _land(lake, labels, "bronze.inspection_images", ["silver.inspection_images"], bronze,
                   window, light, on_progress)
    if boxes is not None:
        land_boxes(lake, Path(boxes), bronze, found, box_format, window, report)
    if unlisted:
        report.notes.append(f"{len(unlisted)} image files in {directory} not in the labels "
                            "file were not imported")
    if extra:
        report.notes.append(f"extra label columns {extra} kept as 'attributes' of each bronze "
                            "inspection message (silver.inspection_images has no column for "
                            "them)")
    return report


def _decode_all(
    directory: Path, names: list[str], on_progress: OnProgress | None = None
) -> list[tuple[bytes, tuple[int, int], str, datetime] | ImportRefused]:
    """``_grayscale_png`` of every file, in threads (Pillow releases the GIL while it decodes
    and encodes); a refusal is returned in the file's place, so all of them can be named."""

    def one(name: str) -> tuple[bytes, tuple[int, int], str, datetime] | ImportRefused:
        try:
            return _grayscale_png(directory / name, name)
        except ImportRefused as exc:
            return exc

    results: list[tuple[bytes, tuple[int, int], str, datetime] | ImportRefused] = []

    def done(result: tuple[bytes, tuple[int, int], str, datetime] | ImportRefused) -> None:
        results.append(result)
        if on_progress is not None:
            on_progress("decoding images", len(results), len(names))

    if on_progress is not None:
        on_progress("decoding images", 0, len(names))
    if len(names) < 16:
        for name in names:
            done(one(name))
        return results
    workers = min(8, (os.cpu_count() or 1) + 2)  # a little over the cores: file reads wait
    with ThreadPoolExecutor(workers) as pool:
        for result in pool.map(one, names, chunksize=8):  # in order, as they finish
            done(result)
    return results


def _grayscale_png(path: Path, name: str) -> tuple[bytes, tuple[int, int], str, datetime]:
    from PIL import Image, UnidentifiedImageError

    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ImportRefused(f"{name}: not a .png/.jpg/.jpeg file")
    try:
        raw = path.read_bytes()
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that: refuse it all the same
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as image:
                image.load()  # decode it all: a truncated or corrupt file fails here
                size = image.size
                if image.format == "PNG" and image.mode == "L":
                    data = raw  # already what silver stores: keep the file's own bytes
                else:
                    # fast zlib level: "optimize" tried every filter and was most of the time
                    out = io.BytesIO()
                    image.convert("L").save(out, format="PNG", compress_level=3)
                    data = out.getvalue()
    except FileNotFoundError:
        raise ImportRefused(f"{name}: no such file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImportRefused(f"{name}: refused as a decompression bomb ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImportRefused(f"{name}: unreadable image ({exc})") from None
    digest = "img-" + hashlib.blake2b(name.encode() + raw, digest_size=12).hexdigest()
    mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return data, size, digest, mtime


def _refuse_outside(directory: Path, files: pl.Series, labels: Path) -> None:
    """Every label path must resolve inside the image folder (symlinks followed)."""
    root = directory.resolve()
    bad = []
    for line, name in enumerate(files, start=2):
        if Path(name).is_absolute():
            bad.append(f"line {line}: {name!r} is an absolute path")
        elif not (root / name).resolve().is_relative_to(root):
            bad.append(f"line {line}: {name!r} resolves outside {directory}")
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise ImportRefused(f"{labels}: {len(bad)} image paths leave the image folder: "
                            + "; ".join(bad[:5]) + more)


# -- validation helpers ------------------------------------------------------------------


def _present(frame: pl.DataFrame, columns: Iterable[str]) -> list[str]:
    return [c for c in columns if c in frame.columns]


def _refuse_conflicts(frame: pl.DataFrame, key: list[str], path: Path) -> None:
    """Two lines with one key must say the same thing (an exact repeat is a redelivery)."""
    values = [c for c in frame.columns if c not in key]
    lines = frame.with_row_index("_line", offset=2).with_columns(
        pl.struct(values).hash(seed=7).alias("_fp") if values else pl.lit(0).alias("_fp")
    )
    clashes = (
        lines.group_by(key, maintain_order=True)
        .agg(pl.col("_line"), pl.col("_fp").n_unique().alias("_n"))
        .filter(pl.col("_n") > 1)
    )
    if clashes.height == 0:
        return
    examples = []
    for row in clashes.head(3).iter_rows(named=True):
        shown = ", ".join(f"{c}={row[c]}" for c in key)
        at = [int(n) for n in row["_line"]]
        diff = [c for c in values
                if lines.filter(pl.col("_line").is_in(at)).get_column(c).n_unique() > 1]
        examples.append(f"{shown} on lines {at} (differing: {', '.join(diff)})")
    raise ImportRefused(f"{path}: {clashes.height} keys appear on several lines with different "
                        f"values: " + "; ".join(examples))


def _refuse_implausible(
    frame: pl.DataFrame, ts: pl.Series, column: str, path: Path, window: PlausibleWindow
) -> None:
    low, high = window.bounds()
    bad = (ts < low) | (ts > high)
    if bad.any():
        raise ImportRefused(f"{path}: column {column!r} has timestamps outside the plausible "
                            f"window {window.describe()} {_examples(frame, bad, column)}")


def _require(frame: pl.DataFrame, columns: Iterable[str], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ImportRefused(f"{path}: missing columns {missing} (has {frame.columns})")


def _examples(frame: pl.DataFrame, bad: pl.Series, column: str) -> str:
    lines = (bad.arg_true() + 2).to_list()[:3]  # CSV line numbers (header is line 1)
    values = frame.get_column(column).filter(bad).head(3).to_list()
    return f"e.g. {values!r} on lines {lines}"


def _numeric(frame: pl.DataFrame, column: str, path: Path, hint: str = "numeric") -> pl.Series:
    series = frame.get_column(column)
    if series.dtype.is_numeric():
        return series.cast(pl.Float64)
    if series.dtype == pl.Null:
        return series.cast(pl.Float64)
    cast = series.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    bad = cast.is_null() & series.is_not_null()
    if bad.any():
        raise ImportRefused(f"{path}: column {column!r} ({hint}) must be numeric, "
                            f"got {series.dtype} values {_examples(frame, bad, column)}")
    return cast


def _timestamps(
    frame: pl.DataFrame, column: str, path: Path, window: PlausibleWindow = DEFAULT_WINDOW
) -> pl.Series:
    series = frame.get_column(column)
    if isinstance(series.dtype, pl.Datetime):
        if series.dtype.time_zone is None:  # naive: taken as UTC
            series = series.dt.replace_time_zone("UTC")
        parsed = series.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    elif series.dtype == pl.Date:
        parsed = series.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    elif series.dtype == pl.String:
        try:
            parsed = series.str.to_datetime(time_zone="UTC", time_unit="us", strict=False)
        except Exception:  # polars cannot even infer a format from the first values
            parsed = pl.Series(column, [None] * len(series), dtype=pl.Datetime("us", "UTC"))
    else:
        raise ImportRefused(f"{path}: column {column!r} must be ISO 8601 text or a datetime, "
                            f"got {series.dtype}")
    bad = parsed.is_null()
    if bad.any():
        raise ImportRefused(f"{path}: column {column!r} has missing or unparseable timestamps "
                            f"(use ISO 8601, one format per file) {_examples(frame, bad, column)}")
    _refuse_implausible(frame, parsed, column, path, window)
    return parsed.alias("ts")


def _label(
    frame: pl.DataFrame, column: str, threshold: float, path: Path
) -> tuple[pl.Series, pl.Series]:
    """(passed, yield_pct) from a yield-percent or pass/fail label column."""
    series = frame.get_column(column)
    if series.null_count():
        raise ImportRefused(f"{path}: label column {column!r} is empty "
                            f"{_examples(frame, series.is_null(), column)}")
    if series.dtype == pl.Boolean:
        return series, series.cast(pl.Float64) * 100.0
    text = series.cast(pl.String).str.strip_chars().str.to_lowercase()
    if text.is_in(list(PASS_TRUE | PASS_FALSE)).all() and series.dtype == pl.String:
        passed = text.is_in(list(PASS_TRUE))
        return passed, passed.cast(pl.Float64) * 100.0
    values = _numeric(frame, column, path, hint="the label: a yield in % or pass/fail")
    if values.is_in([0.0, 1.0]).all():  # a 0/1 flag, not a yield of 0 % or 1 %
        return values == 1.0, values * 100.0
    outside = (values < 0) | (values > 100)
    if outside.any():
        raise ImportRefused(f"{path}: label {column!r} as yield must lie in 0..100 "
                            f"{_examples(frame, outside, column)}")
    return values >= threshold, values


def _text(frame: pl.DataFrame, column: str) -> pl.Series:
    if column not in frame.columns:
        return pl.Series(column, [None] * frame.height, dtype=pl.String)
    return frame.get_column(column).cast(pl.String).alias(column)


# -- landing -----------------------------------------------------------------------------


def _bronze_rows(
    frame: pl.DataFrame,
    ts: pl.Series,
    asset_id: pl.Series,
    payload: pl.DataFrame,
    kind: str,
    enterprise: str | None,
) -> pl.DataFrame:
    """Bronze messages for the rows: place, time, and the payload as UNS JSON."""
    from mfg_assets.settings import get_settings

    place = {c: _text(frame, c) for c in PLACE}
    text = _payload_text(payload)
    now = datetime.now(UTC)
    rows = pl.DataFrame({
        "source": SOURCE,
        "channel": f"import/{kind}",
        "received_at": pl.Series([now] * frame.height, dtype=pl.Datetime("us", "UTC")),
        "event_time": ts,
        "enterprise": enterprise or get_settings().enterprise,
        **place,
        "asset_id": asset_id.cast(pl.String),
        "payload": text,
    })
    topic = pl.concat_str(
        [pl.col(c).fill_null("-") for c in ("enterprise", *PLACE, "asset_id")] + [pl.lit(kind)],
        separator="/",
    )
    return rows.with_columns(
        topic.alias("topic"),
        pl.col("event_time").dt.date().alias("event_date"),
        # same content, same id: a re-imported row is a redelivery, deduplicated in silver
        pl.concat_str([topic, pl.col("payload")])
        .map_elements(_digest, return_dtype=pl.String)
        .alias("message_id"),
    )


def _payload_text(payload: pl.DataFrame) -> pl.Series:
    """Each row of ``payload`` as a JSON object (the UNS message body)."""
    return payload.select(pl.struct(pl.all()).struct.json_encode().alias("payload"))["payload"]


def _digest(text: str) -> str:
    return "imp-" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _land(
    lake: Lake,
    path: Path,
    bronze_name: str,
    silver_names: Sequence[str],
    bronze: pl.DataFrame,
    window: PlausibleWindow = DEFAULT_WINDOW,
    light: tuple[pl.Series, str, pl.Series] | None = None,
    on_progress: OnProgress | None = None,
) -> ImportReport:
    """Type and check everything, then write bronze, silver and the ingest batch record.

    ``on_progress(step, done, total)``: one step per table typed, per table written and
    the batch record (the rows go through polars whole: there is no per-row progress).

    ``light`` = (payload without its bulky field, silver column, that column's values): the
    typers then parse the small payload and the values are put in place afterwards (for
    images: parsing megabytes of JSON only to base64-decode the bytes we just encoded was a
    third of an import). The rows are the same; ``test_importers`` holds them equal.
    """
    if bronze.height == 0:
        raise ImportRefused(f"{path}: no rows to import")
    steps = [*(f"checking {name}" for name in silver_names), f"writing {bronze_name}",
             *(f"writing {name}" for name in silver_names), "recording the batch"]

    def step(name: str) -> None:
        if on_progress is not None:
            on_progress(name, steps.index(name), len(steps))

    batch = f"import-{uuid.uuid4().hex[:16]}"
    bronze = bronze.with_columns(pl.lit(batch).alias("ingest_batch_id"))
    bronze_spec = table(bronze_name)
    bronze = bronze.select(list(bronze_spec.polars_schema))
    refined: dict[str, pl.DataFrame] = {}
    for name in silver_names:
        step(f"checking {name}")
        spec = table(name)
        typer = TYPERS[name][1]
        try:
            if light is None:
                typed = typer(bronze)
            else:
                payload, column, values = light
                typed = typer(bronze.with_columns(payload.alias("payload")))
                typed = typed.with_columns(values.alias(column))
            result = refine(spec, typed, run_id=batch, window=window)
        except Exception as exc:  # a typer failing on the payload means the input is off
            raise ImportRefused(f"{path}: rows do not fit {name}: {exc}") from exc
        if result.rejected.height:
            reasons = result.rejected.get_column("reason").unique().sort().to_list()
            raise ImportRefused(
                f"{path}: {result.rejected.height} rows refused by the {name} schema: "
                + "; ".join(reasons[:5])
            )
        _refuse_silver_conflicts(lake, spec, result.valid, path)
        refined[name] = result.valid
    # validated: from here on, only writes
    report = ImportReport(batch_id=batch, file=str(path))
    step(f"writing {bronze_name}")
    lake.append(bronze_spec, bronze, **{"mfg.import": str(path)})
    report.rows_written[bronze_name] = bronze.height
    for name, frame in refined.items():
        step(f"writing {name}")
        spec = table(name)
        new = _not_yet_in(lake, spec, frame)
        report.skipped_existing += frame.height - new.height
        lake.append(spec, new, **{"mfg.import": str(path)})
        report.rows_written[name] = new.height
        if spec.partition_by:
            report.days = sorted(
                {*report.days, *(str(d) for d in new.get_column(spec.partition_by).unique())}
            )
    step("recording the batch")
    lake.append(table("bronze.ingest_batches"), pl.DataFrame({
        "ingest_batch_id": [batch],
        "source": [SOURCE],
        "file": [str(path)],
        "file_sha256": [hashlib.sha256(Path(path).read_bytes()).hexdigest()],
        "committed_at": [datetime.now(UTC)],
        "messages": [bronze.height],
        "valid": [bronze.height],
        "invalid": [0],
    }))
    if on_progress is not None:
        on_progress("recording the batch", len(steps), len(steps))
    return report


def _refuse_silver_conflicts(
    lake: Lake, spec: TableSpec, frame: pl.DataFrame, path: Path
) -> None:
    """A key silver already holds must come with the same values (else: a correction,
    which an append cannot express; refuse rather than keep two truths)."""
    if not lake.exists(spec) or frame.height == 0:
        return
    keys, values = list(spec.key), value_columns(spec)
    existing = lake.scan(spec)
    if spec.partition_by:
        days = frame.get_column(spec.partition_by).unique().to_list()
        existing = existing.filter(pl.col(spec.partition_by).is_in(days))
    fingerprint = pl.struct(values).hash(seed=7).alias("_fp")
    schema = {c: spec.polars_schema[c] for c in (*keys, *values)}
    have = existing.select(*keys, *values).collect().cast(schema).select(*keys, fingerprint)
    clash = (
        frame.select(*keys, fingerprint)
        .join(have, on=keys, how="inner", nulls_equal=True, suffix="_silver")
        .filter(pl.col("_fp") != pl.col("_fp_silver"))
    )
    if clash.height:
        shown = [", ".join(f"{k}={row[k]}" for k in keys if row[k] is not None)
                 for row in clash.head(3).iter_rows(named=True)]
        raise ImportRefused(f"{path}: {clash.height} rows have a key {spec.qualified_name} "
                            f"already holds with other values: " + "; ".join(shown))


def _not_yet_in(lake: Lake, spec: TableSpec, frame: pl.DataFrame) -> pl.DataFrame:
    """Rows whose key the table does not have yet (only the partitions they fall into)."""
    if not lake.exists(spec) or frame.height == 0:
        return frame
    keys = list(spec.key)
    existing = lake.scan(spec)
    if spec.partition_by:
        days = frame.get_column(spec.partition_by).unique().to_list()
        existing = existing.filter(pl.col(spec.partition_by).is_in(days))
    present = existing.select(keys).collect()
    return frame.join(present, on=keys, how="anti", nulls_equal=True)
