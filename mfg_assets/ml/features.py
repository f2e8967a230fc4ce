"""Feature builders: silver frames in, one feature frame out (plain polars, no Dagster).

Every builder is point-in-time correct: a row uses only data stamped at or before the
end of its window (or the unit's own time), so a model trained on these rows never sees
the future. Names of sensors, process parameters and classes come from the data; the
caller reads silver (and records the Delta versions it read) and writes the result.

Windows are fixed, non-overlapping and closed on the left, ``[window_start, window_end)``,
aligned to the clock (``every`` boundaries since the epoch), so a rebuild over more data
produces the same windows for the same time span.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import polars as pl

from mfg_assets.lake.delta import Lake, WriteResult
from mfg_assets.lake.lineage import read_commit
from mfg_assets.lake.names import (
    FEATURES_ASSEMBLY_IMAGES,
    FEATURES_EDGE_TELEMETRY,
    FEATURES_IMAGE_DATASET,
    FEATURES_PROCESS_UNITS,
    FEATURES_SENSOR_WINDOWS,
    SILVER_EDGE_TELEMETRY,
    SILVER_FAULT_LABELS,
    SILVER_IMAGE_BOXES,
    SILVER_INSPECTION_IMAGES,
    SILVER_PROCESS_PARAMETERS,
    SILVER_PROCESS_RUNS,
    SILVER_SENSOR_READINGS,
)
from mfg_assets.lake.registry import table

SEP = "__"  # wide feature columns are named <sensor>__<stat>
PARAM_PREFIX = "param__"  # process parameters pivoted wide: param__<name>
SPLITS = ("train", "validation", "test")
WINDOW_KEYS = ("machine_id", "machine_type", "window_start")
BASIC_STATS = ("mean", "std", "min", "max", "slope", "rms_diff")
SPECTRAL_STATS = ("fft_low", "fft_mid", "fft_high", "fft_peak")
STATS = BASIC_STATS + SPECTRAL_STATS


def _duration(every: str | timedelta) -> pl.Expr:
    return pl.duration(seconds=_seconds(every))


def _seconds(every: str | timedelta) -> float:
    if isinstance(every, timedelta):
        return every.total_seconds()
    # polars' own duration strings ("10m", "1h", "30s")
    start = pl.datetime(2000, 1, 1)
    return pl.select((start.dt.offset_by(every) - start).dt.total_microseconds()).item() / 1e6


# -- sensor windows --------------------------------------------------------------------------


def sensor_windows(
    readings: pl.DataFrame,
    fault_labels: pl.DataFrame | None = None,
    every: str | timedelta = "10m",
    min_coverage: float = 0.5,
) -> pl.DataFrame:
    """Per machine and window: statistics of every sensor, wide, plus a fault label.

    ``readings`` is ``silver.sensor_readings`` (long: machine_id, machine_type, sensor, ts,
    value). Per sensor: mean, std, min, max, slope (units per hour), RMS of successive
    differences (roughness), and the spectrum of the mean-removed window: the share of
    AC power in the low/mid/high third of the band and the dominant frequency as a
    fraction of Nyquist. Windows where a sensor has fewer than ``min_coverage`` of the
    machine's usual sample count (edges of the data, outages) are dropped: their
    statistics would look anomalous for reasons that have nothing to do with the machine.

    ``is_fault``: the window overlaps ``[detectable or onset, end]`` of a fault of that machine in
    ``fault_labels`` (``silver.fault_labels``); null for every row when no labels exist.
    """
    long = _window_stats(readings, every)
    if long.height == 0:
        return _empty_windows()
    wide = _widen(long)
    wide = _keep_covered(wide, min_coverage)
    wide = wide.with_columns((pl.col("window_start") + _duration(every)).alias("window_end"))
    wide = _label_faults(wide, fault_labels)
    features = sorted(c for c in wide.columns if SEP in c)
    head = [*WINDOW_KEYS[:2], "window_start", "window_end", "n_samples", "is_fault"]
    return wide.select(*head, *features).sort("machine_id", "window_start")


def _window_stats(readings: pl.DataFrame, every: str | timedelta) -> pl.DataFrame:
    """Long frame: one row per machine, sensor and window with the basic statistics."""
    value = pl.col("value")
    t = (pl.col("ts") - pl.col("ts").first()).dt.total_microseconds() / 1e6  # seconds
    t_c = t - t.mean()
    slope = (t_c * (value - value.mean())).sum() / (t_c * t_c).sum() * 3600.0
    return (
        readings.select("machine_id", "machine_type", "sensor", "ts", "value")
        .sort("machine_id", "sensor", "ts")
        .group_by_dynamic(
            "ts",
            every=every,
            closed="left",
            label="left",
            start_by="window",
            group_by=["machine_id", "machine_type", "sensor"],
        )
        .agg(
            pl.len().alias("n"),
            value.mean().alias("mean"),
            value.std().alias("std"),
            value.min().alias("min"),
            value.max().alias("max"),
            slope.alias("slope"),
            value.diff().pow(2).mean().sqrt().alias("rms_diff"),
            value.alias("_values"),
        )
        .rename({"ts": "window_start"})
        .pipe(_with_spectrum)
        .drop("_values")
    )


def _with_spectrum(frame: pl.DataFrame) -> pl.DataFrame:
    """Add spectral shares per window; windows of equal length share one FFT call."""
    lengths = frame.get_column("_values").list.len().to_numpy()
    out = np.full((frame.height, len(SPECTRAL_STATS)), np.nan)
    for length in np.unique(lengths):
        rows = np.flatnonzero(lengths == length)
        if length < 4:  # too short for a spectrum
            continue
        block = frame.get_column("_values").gather(rows).list.to_array(int(length)).to_numpy()
        out[rows] = spectral_shares(block)
    columns = {name: out[:, i] for i, name in enumerate(SPECTRAL_STATS)}
    return frame.with_columns(pl.Series(name, values) for name, values in columns.items())


def spectral_shares(block: np.ndarray) -> np.ndarray:
    """Rows of samples -> (low, mid, high share of AC power, dominant freq / Nyquist)."""
    centred = block - block.mean(axis=1, keepdims=True)
    power = np.abs(np.fft.rfft(centred, axis=1))[:, 1:] ** 2  # drop DC
    freq = np.arange(1, power.shape[1] + 1) / (block.shape[1] / 2.0)  # fraction of Nyquist
    total = power.sum(axis=1)
    safe = np.where(total > 0, total, 1.0)
    bands = [(freq <= 1 / 3), (freq > 1 / 3) & (freq <= 2 / 3), (freq > 2 / 3)]
    shares = [np.where(total > 0, power[:, band].sum(axis=1) / safe, 0.0) for band in bands]
    peak = np.where(total > 0, freq[np.argmax(power, axis=1)], 0.0)
    return np.column_stack([*shares, peak])


def _widen(long: pl.DataFrame) -> pl.DataFrame:
    """Pivot to ``<sensor>__<stat>`` columns and attach each window's coverage.

    Coverage: the smallest ratio, over the machine's sensors, of the window's sample
    count to the machine's usual (median) count; a sensor missing from the window
    counts as zero.
    """
    keys = list(WINDOW_KEYS)
    usual = long.group_by("machine_id", "sensor").agg(pl.col("n").median().alias("usual"))
    n_sensors = long.group_by("machine_id").agg(pl.col("sensor").n_unique().alias("_expected"))
    summary = (
        long.join(usual, on=["machine_id", "sensor"])
        .group_by(keys)
        .agg(
            pl.col("n").min().cast(pl.Int64).alias("n_samples"),
            (pl.col("n") / pl.col("usual")).min().alias("_coverage"),
            pl.len().alias("_sensors"),
        )
        .join(n_sensors, on="machine_id")
        .with_columns(
            pl.when(pl.col("_sensors") < pl.col("_expected"))
            .then(0.0)
            .otherwise(pl.col("_coverage"))
            .alias("_coverage")
        )
        .drop("_sensors", "_expected")
    )
    stacked = long.drop("n").unpivot(
        index=[*keys, "sensor"], on=list(STATS), variable_name="stat", value_name="v"
    )
    wide = stacked.with_columns(
        pl.concat_str("sensor", pl.lit(SEP), "stat").alias("feature")
    ).pivot(on="feature", index=keys, values="v")
    return wide.join(summary, on=keys)


def _keep_covered(wide: pl.DataFrame, min_coverage: float) -> pl.DataFrame:
    return wide.filter(pl.col("_coverage") >= min_coverage).drop("_coverage")


def _label_faults(windows: pl.DataFrame, labels: pl.DataFrame | None) -> pl.DataFrame:
    if labels is None or labels.height == 0:
        return windows.with_columns(pl.lit(None, pl.Boolean).alias("is_fault"))
    # A fault counts from its first symptom where the labels know it (maintenance records
    # note when a problem showed, not when the wear began), else from its onset.
    known = "detectable" in labels.columns
    onset = pl.coalesce("detectable", "onset") if known else pl.col("onset")
    intervals = labels.select("machine_id", onset.alias("onset"), "end")
    overlap = (pl.col("onset") < pl.col("window_end")) & (pl.col("end") >= pl.col("window_start"))
    flags = (
        windows.select("machine_id", "window_start", "window_end")
        .join(intervals, on="machine_id", how="left")
        .group_by("machine_id", "window_start")
        .agg(overlap.fill_null(False).any().alias("is_fault"))
    )
    return windows.join(flags, on=["machine_id", "window_start"], how="left")


def _empty_windows() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "machine_id": pl.String,
            "machine_type": pl.String,
            "window_start": pl.Datetime("us", "UTC"),
            "window_end": pl.Datetime("us", "UTC"),
            "n_samples": pl.Int64,
            "is_fault": pl.Boolean,
        }
    )


def feature_columns(frame: pl.DataFrame) -> list[str]:
    """The ``<sensor>__<stat>`` columns of a sensor-window frame, in table order."""
    return [c for c in frame.columns if SEP in c and not c.startswith(PARAM_PREFIX)]


def sensors_of(frame: pl.DataFrame) -> list[str]:
    return sorted({c.split(SEP)[0] for c in feature_columns(frame)})


# -- process units ---------------------------------------------------------------------------


def process_units(runs: pl.DataFrame, parameters: pl.DataFrame) -> pl.DataFrame:
    """One row per produced unit: its parameters (``param__<name>``) and measured yield.

    Parameters recorded after the unit's own time are ignored (point in time: yield is
    measured on the finished unit; what was set later cannot have caused it).
    """
    base = runs.select(
        "unit_id", "machine_id", "product", "material_lot", "ts", "yield_pct", "passed"
    )
    params = parameters.join(base.select("unit_id", pl.col("ts").alias("_unit_ts")), on="unit_id")
    params = params.filter(pl.col("ts") <= pl.col("_unit_ts"))
    if params.height == 0:
        return base.sort("ts", "unit_id")
    wide = params.with_columns(pl.concat_str(pl.lit(PARAM_PREFIX), "name").alias("name")).pivot(
        on="name", index="unit_id", values="value", aggregate_function="last"
    )
    names = sorted(c for c in wide.columns if c.startswith(PARAM_PREFIX))
    return base.join(wide.select("unit_id", *names), on="unit_id", how="left").sort("ts", "unit_id")


def parameter_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith(PARAM_PREFIX)]


# -- inspection images -----------------------------------------------------------------------


def image_dataset(
    images: pl.DataFrame, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
) -> pl.DataFrame:
    """Inspection images with a deterministic, leak-free ``split``.

    Split by time, per camera: the earliest 70 % of a camera's images (ordered by ts,
    then image_id) train, the next 15 % validate, the last 15 % test. Every validation
    or test image is later than every training image of its camera, so nothing from the
    future leaks into training, and the same rows always get the same split.
    """
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    train_end, val_end = fractions[0], fractions[0] + fractions[1]
    position = pl.int_range(pl.len()).over("camera_id") / pl.len().over("camera_id")
    split = (
        pl.when(position < train_end)
        .then(pl.lit("train"))
        .when(position < val_end)
        .then(pl.lit("validation"))
        .otherwise(pl.lit("test"))
    )
    return (
        images.select("image_id", "camera_id", "unit_id", "ts", "width", "height", "label", "png")
        .sort("camera_id", "ts", "image_id")
        .with_columns(split.alias("split"))
        .sort("ts", "image_id")
    )


def assembly_images(images: pl.DataFrame, boxes: pl.DataFrame) -> pl.DataFrame:
    """Inspection images that have part boxes (silver.image_boxes), split as
    :func:`image_dataset` splits; ``missing`` is null (imports do not say which slots are
    empty: the detection family learns the layout from the boxes)."""
    keys = ["enterprise", "site", "area", "line", "cell", "image_id"]
    joined = images.join(boxes.select(*keys, "boxes"), on=keys, how="inner", nulls_equal=True)
    data = image_dataset(joined)
    return data.join(joined.select("image_id", "boxes").unique("image_id", keep="first"),
                     on="image_id", how="left").with_columns(
        pl.lit(None, dtype=pl.String).alias("missing")
    ).select("image_id", "camera_id", "unit_id", "ts", "width", "height", "label", "png",
             "boxes", "missing", "split")


# -- edge telemetry --------------------------------------------------------------------------

# Log templates: a Drain-style mask turns each line into its template (numbers, hex
# addresses and ids become placeholders), and each template is hashed into one of a fixed
# number of buckets, so the columns are the same on every rebuild and for templates never
# seen before. INFO lines (heartbeat chatter) are left out.
LOG_BUCKETS = 32
_LOG_MASKS = (
    (r"0x[0-9a-fA-F]+", "<HEX>"),
    (r"\b[0-9a-fA-F]*[0-9][0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*\b", "<HEX>"),  # bare hex ids
    (r"[-+]?\d+(\.\d+)?", "<NUM>"),
)
# Trailing spans of the trend features (closed on the right: up to the window's end).
TREND_SPANS = {"1h": "1h", "3h": "3h"}


def log_template(line: pl.Expr) -> pl.Expr:
    """The template of a log line: its variable parts masked."""
    for pattern, mask in _LOG_MASKS:
        line = line.str.replace_all(pattern, mask)
    return line


def log_bucket(template: str) -> int:
    """The stable bucket of a template (blake2b: Python's hash() is salted per process)."""
    digest = hashlib.blake2b(template.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") % LOG_BUCKETS


def log_templates(telemetry: pl.DataFrame) -> pl.DataFrame:
    """One row per non-INFO log line: edge_id, ts, template and its bucket."""
    lines = (
        telemetry.select("edge_id", "ts", pl.col("log_text").str.split("\n").alias("line"))
        .explode("line")
        .filter(pl.col("line").is_not_null(), ~pl.col("line").str.starts_with("INFO "),
                pl.col("line") != "")
        .with_columns(log_template(pl.col("line")).alias("template"))
    )
    buckets = {t: log_bucket(t) for t in lines.get_column("template").unique().to_list()}
    return lines.with_columns(
        pl.col("template").replace_strict(buckets, default=0, return_dtype=pl.Int64)
        .alias("bucket")
    ).drop("line")


def edge_telemetry(
    telemetry: pl.DataFrame,
    fault_labels: pl.DataFrame | None = None,
    every: str | timedelta = "10m",
) -> pl.DataFrame:
    """Per edge and window: heartbeats, CPU/memory, log problems, firmware, health features.

    Health features (``<signal>__<stat>``, the edge_health model's inputs) use only
    heartbeats up to the window's end: per-window CPU, memory and temperature, runtime
    restarts (uptime going backwards), trailing trends (least-squares slope per hour of the
    window means over the last 1 h and 3 h), trailing log-problem counts, and counts of
    log-line templates per window (``log__tNN``, see ``log_templates``).

    Ground truth from ``fault_labels`` (``silver.fault_labels``: the device id is its
    ``machine_id``): ``hours_to_failure`` from the window's end to the edge's next failure,
    ``failed`` when a failure or the downtime after it overlaps the window; both null for
    every row when no labels exist.
    """
    if "temp_c" not in telemetry.columns:  # silver written before temperature was reported
        telemetry = telemetry.with_columns(pl.lit(None, pl.Float64).alias("temp_c"))
    if "log_text" not in telemetry.columns:
        telemetry = telemetry.with_columns(pl.lit(None, pl.String).alias("log_text"))
    beats = telemetry.sort("edge_id", "ts").with_columns(
        (pl.col("uptime_s") < pl.col("uptime_s").shift(1).over("edge_id"))
        .fill_null(False).cast(pl.Int64).alias("_restart")
    )
    dynamic = {"every": every, "closed": "left", "label": "left", "start_by": "window"}
    windows = (
        beats.group_by_dynamic("ts", group_by="edge_id", **dynamic)
        .agg(
            pl.len().cast(pl.Int64).alias("heartbeats"),
            pl.col("cpu_pct").mean().alias("cpu_mean"),
            pl.col("cpu_pct").max().alias("cpu_max"),
            pl.col("mem_pct").mean().alias("mem_mean"),
            pl.col("mem_pct").max().alias("mem_max"),
            pl.col("log_warnings").sum().cast(pl.Int64).alias("warnings"),
            pl.col("log_errors").sum().cast(pl.Int64).alias("errors"),
            (pl.col("status") != "online").sum().cast(pl.Int64).alias("degraded"),
            pl.col("firmware").last().alias("firmware"),
            pl.col("bundle_id").last().alias("bundle_id"),
            pl.col("temp_c").mean().alias("temp__mean"),
            pl.col("temp_c").max().alias("temp__max"),
            pl.col("_restart").sum().cast(pl.Float64).alias("restarts__count"),
            (pl.col("uptime_s").last() / 3600.0).alias("uptime__hours"),
        )
        .rename({"ts": "window_start"})
        .with_columns((pl.col("window_start") + _duration(every)).alias("window_end"))
    )
    windows = windows.with_columns(
        pl.col("cpu_mean").alias("cpu__mean"),
        pl.col("cpu_max").alias("cpu__max"),
        pl.col("mem_mean").alias("mem__mean"),
        pl.col("mem_max").alias("mem__max"),
    )
    windows = _with_trends(windows).join(
        _template_counts(beats, every), on=["edge_id", "window_start"], how="left")
    buckets = [f"log__t{b:02d}" for b in range(LOG_BUCKETS)]
    windows = windows.with_columns(pl.col(*buckets, "log__templates").fill_null(0.0))
    windows = _label_device_failures(windows, fault_labels)
    head = ["edge_id", "window_start", "window_end", "heartbeats", "cpu_mean", "cpu_max",
            "mem_mean", "mem_max", "warnings", "errors", "degraded", "firmware", "bundle_id",
            "hours_to_failure", "failed"]
    health = sorted(c for c in windows.columns if SEP in c)
    return windows.select(*head, *health).sort("edge_id", "window_start")


def _with_trends(windows: pl.DataFrame) -> pl.DataFrame:
    """Trailing slopes (per hour) and sums over the last 1 h / 3 h of each edge's windows."""
    frame = windows.sort("edge_id", "window_start").with_columns(
        ((pl.col("window_end") - pl.col("window_end").min().over("edge_id"))
         .dt.total_milliseconds() / 3.6e6).alias("_t")
    )
    exprs = []
    for name, span in TREND_SPANS.items():
        def mean(expr: pl.Expr, span: str = span) -> pl.Expr:
            return expr.rolling_mean_by("window_end", window_size=span).over("edge_id")

        def total(expr: pl.Expr, span: str = span) -> pl.Expr:
            return expr.rolling_sum_by("window_end", window_size=span).over("edge_id")

        t = pl.col("_t")
        var_t = mean(t * t) - mean(t) ** 2
        for signal in ("mem", "temp", "cpu"):
            y = pl.col(f"{signal}_mean" if signal != "temp" else "temp__mean")
            slope = (mean(t * y) - mean(t) * mean(y)) / var_t
            exprs.append(pl.when(var_t > 1e-9).then(slope).otherwise(None)
                         .alias(f"{signal}__slope_{name}"))
        exprs += [
            total(pl.col("restarts__count")).alias(f"restarts__sum_{name}"),
            total(pl.col("errors").cast(pl.Float64)).alias(f"log__errors_{name}"),
            total(pl.col("warnings").cast(pl.Float64)).alias(f"log__warnings_{name}"),
        ]
    return frame.with_columns(exprs).drop("_t")


def _template_counts(beats: pl.DataFrame, every: str | timedelta) -> pl.DataFrame:
    """Per edge and window: how many lines of each template bucket, and distinct templates."""
    lines = log_templates(beats)
    columns = [f"log__t{b:02d}" for b in range(LOG_BUCKETS)]
    if lines.height == 0:
        schema = {"edge_id": pl.String, "window_start": pl.Datetime("us", "UTC"),
                  "log__templates": pl.Float64, **dict.fromkeys(columns, pl.Float64)}
        return pl.DataFrame(schema=schema)
    dynamic = {"every": every, "closed": "left", "label": "left", "start_by": "window"}
    counts = (
        lines.sort("edge_id", "ts")
        .group_by_dynamic("ts", group_by="edge_id", **dynamic)
        .agg(
            pl.col("template").n_unique().cast(pl.Float64).alias("log__templates"),
            *[(pl.col("bucket") == b).sum().cast(pl.Float64).alias(c)
              for b, c in enumerate(columns)],
        )
        .rename({"ts": "window_start"})
    )
    return counts.with_columns(pl.col("window_start").dt.cast_time_unit("us"))


def _label_device_failures(windows: pl.DataFrame, labels: pl.DataFrame | None) -> pl.DataFrame:
    if labels is None or labels.height == 0:
        return windows.with_columns(pl.lit(None, pl.Float64).alias("hours_to_failure"),
                                    pl.lit(None, pl.Boolean).alias("failed"))
    failures = labels.filter(pl.col("failure").is_not_null()).select(
        pl.col("machine_id").alias("edge_id"), "failure", "end")
    # the next failure at or after the window's end (point in time of the prediction)
    nxt = (
        windows.select("edge_id", "window_start", "window_end").sort("edge_id", "window_end")
        .join_asof(failures.sort("edge_id", "failure").select("edge_id", "failure"),
                   left_on="window_end", right_on="failure", by="edge_id", strategy="forward",
                   check_sortedness=False)  # sorted within each edge just above
        .select("edge_id", "window_start",
                ((pl.col("failure") - pl.col("window_end")).dt.total_milliseconds() / 3.6e6)
                .alias("hours_to_failure"))
    )
    overlap = (pl.col("failure") < pl.col("window_end")) & (pl.col("end") >= pl.col("window_start"))
    failed = (
        windows.select("edge_id", "window_start", "window_end")
        .join(failures, on="edge_id", how="left")
        .group_by("edge_id", "window_start")
        .agg(overlap.fill_null(False).any().alias("failed"))
    )
    return windows.join(nxt, on=["edge_id", "window_start"], how="left").join(
        failed, on=["edge_id", "window_start"], how="left")


# -- the feature tables: which builder makes which table from which silver tables ---------


@dataclass(frozen=True)
class FeatureSet:
    """A feature table: the silver tables it reads and the builder that turns them into it."""

    table: str  # the feature table (layer.name) in the lake registry
    inputs: tuple[str, ...]  # silver tables, in the builder's argument order
    build: Callable[..., pl.DataFrame]
    description: str


FEATURE_SETS = (
    FeatureSet(
        FEATURES_SENSOR_WINDOWS,
        (SILVER_SENSOR_READINGS, SILVER_FAULT_LABELS),
        sensor_windows,
        "Per machine and 10-minute window: statistics and spectrum of every sensor, with the "
        "ground-truth fault label. Input of the anomaly model.",
    ),
    FeatureSet(
        FEATURES_PROCESS_UNITS,
        (SILVER_PROCESS_RUNS, SILVER_PROCESS_PARAMETERS),
        process_units,
        "One row per produced unit: its process parameters (point in time) and measured "
        "yield. Input of the yield model.",
    ),
    FeatureSet(
        FEATURES_IMAGE_DATASET,
        (SILVER_INSPECTION_IMAGES,),
        image_dataset,
        "Labelled inspection images with a deterministic, time-ordered train/validation/"
        "test split per camera. Input of the vision model.",
    ),
    FeatureSet(
        FEATURES_ASSEMBLY_IMAGES,
        (SILVER_INSPECTION_IMAGES, SILVER_IMAGE_BOXES),
        assembly_images,
        "Assembly images with their imported part boxes and a time-ordered split per "
        "camera. Input of the part detection model.",
    ),
    FeatureSet(
        FEATURES_EDGE_TELEMETRY,
        (SILVER_EDGE_TELEMETRY, SILVER_FAULT_LABELS),
        edge_telemetry,
        "Per edge device and 10-minute window: heartbeats, CPU, memory and temperature, "
        "trends, log problems and log-template counts, firmware and bundle, with the time to "
        "the device's next ground-truth failure. Input of the edge_health model.",
    ),
)


@dataclass(frozen=True)
class FeatureBuild:
    versions: dict[str, int | None]  # silver table -> the Delta version read
    frame: pl.DataFrame  # what was written
    write: WriteResult


def build_feature_set(lake: Lake, feature_set: FeatureSet) -> FeatureBuild:
    """Read the inputs at pinned versions, build, overwrite the feature table; the versions
    read go into its commit (:func:`mfg_assets.lake.lineage.read_commit`)."""
    versions: dict[str, int | None] = {}
    frames = []
    for name in feature_set.inputs:
        spec = table(name)
        versions[name] = lake.version(spec)
        frames.append(lake.read(spec, versions[name]))
    frame = feature_set.build(*frames)
    write = lake.overwrite(table(feature_set.table), frame, **read_commit(versions))
    return FeatureBuild(versions, frame, write)
