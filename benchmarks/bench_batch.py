"""Batch inference over history: 30-day backfills of predictions/<family> against bare loops.

    python benchmarks/bench_batch.py [--quick] [--per-day N] [--machines N]

One process, same machine, one onnxruntime intra-op thread on every side, each pair run
back to back ``--repeat`` times (best of each side kept: the machine is shared). For each
family, rows per second of:

- ``backfill``: ``fleet.batch.predict_days`` over 30 days of a tmp lakehouse's feature
  table, as the Dagster single-run backfill calls it: ONE streamed Delta read of the range,
  the edge's ``Predictor`` in batches, the join with edge predictions, ONE Delta commit.
  vision_defect starts from PNG bytes in Delta, so it includes the PNG decode (thread pool,
  ``--decode-threads``, overlapped with the model); sensor_anomaly starts from feature rows;
- ``bare_e2e``: a bare onnxruntime loop (``session.run`` in the same batch size) from the
  form the backfill starts from, but already in memory: PNG bytes decoded and normalised on
  the same number of threads, then the model, in turn (vision), the windows' float32
  matrix per machine type (sensors). So ``backfill / bare_e2e`` is what the platform adds:
  Delta read and write, polars, the edge's decision code, the join;
- ``scoring``: the same decoded/normalised arrays through the edge's ``Predictor`` (the
  backfill's scoring call) vs bare ``session.run``: the model alone on both sides;
- ``backfill_vs_model_alone`` (vision): the whole backfill, decode included, against the
  bare ``session.run`` over already decoded arrays: decode is CPU work as large as the
  model's, hidden behind it only where spare cores exist;
- ``day_by_day`` (vision): the previous way, ``predict_day`` once per day (30 reads, 30
  commits), for reference;
- the windows' floors, each alone: ``read_floor`` (the range's columns out of the table's
  Parquet in one polars query) and ``write_floor`` (the output in one date-partitioned Delta
  write to an empty folder), and the bare loop at other batch sizes (1 is the edge's);
  ``windows_ceiling_ratio`` = bare / (read floor + bare + write floor): the e2e ratio of a
  backfill that did nothing but read, score and write (the autoencoders cost ~0.2 us a row,
  less than reading or writing the row).

The sensor data is plant-sized: ``--machines`` machines (100; 20 with ``--quick``), 144
windows a day each, 30 days (432,000 windows), one machine type in three each.

Memory: the backfill of 10, 30 and 90 days of each family, each in a fresh child process,
from a second lakehouse holding 90 days of the same data (the feature table overwritten
whole, as the feature assets write it): RSS once imports and the model are loaded, and the
peak RSS during the backfill (VmHWM, reset just before it). The range is read and committed
in spans of at most ``fleet.batch.DEFAULT_SPAN_ROWS`` feature rows (``--span-rows``), so the
peak is the span's, not the range's: ``*_peak_rss_growth_10d_to_90d_mib`` should be near 0.

The models are untrained (speed does not depend on weights): the vision family's
``DefectNet`` (default width) and one autoencoder per machine type of the sensor family's
default size, exported by ``fleet.batch.export_to_folder`` as a champion would be. Prints one
line per figure and writes them to data/bench/bench_batch.json.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _report import report  # noqa: E402  (benchmarks/ is the script's folder)

from mfg_assets.edge.predictor import Predictor, session  # noqa: E402
from mfg_assets.fleet import batch  # noqa: E402
from mfg_assets.lake.delta import Lake  # noqa: E402
from mfg_assets.lake.registry import table  # noqa: E402

SIZE = 64
DAYS = 30
FIRST = date(2026, 11, 1)
SENSORS = {"welder": ["current", "voltage", "wire_feed", "temperature", "gas_flow"],
           "press": ["force", "stroke", "oil_temp", "vibration"],
           "robot": ["torque", "speed", "temperature", "vibration", "position_error"]}
STATS = ["mean", "std", "min", "max"]
WINDOWS_A_DAY = 144  # one per 10 minutes
MEMORY_DAYS = (10, 30, 90)  # backfill lengths whose peak RSS is measured


def status_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process from /proc, in MiB. Not ru_maxrss: Linux
    carries the parent's peak into a child across fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> bool:
    """Restart VmHWM from the current RSS (Linux 4.0+), so the peak is the backfill's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def days(n: int) -> list[date]:
    return [FIRST + timedelta(days=d) for d in range(n)]


def best(fn: Callable[[], float], repeat: int) -> float:
    """The shortest of ``repeat`` timed runs of ``fn`` (which returns its own seconds)."""
    return min(fn() for _ in range(repeat))


# -- data ------------------------------------------------------------------------------------


def image_table(per_day: int, distinct: int = 200, n_days: int = DAYS) -> pl.DataFrame:
    """``n_days`` days of images (a pool of rendered ones, reused: rendering is not what we
    time)."""
    from PIL import Image

    from mfg_assets.sim.config import IMAGE_LABELS, PlantLayout
    from mfg_assets.sim.images import render
    from mfg_assets.sim.rng import rng_for

    def png(pixels: np.ndarray) -> bytes:
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="PNG")
        return out.getvalue()

    camera = PlantLayout().cameras[0]
    labels = [IMAGE_LABELS[k % len(IMAGE_LABELS)] for k in range(distinct)]
    pool = [png(render(rng_for(3, "bench-batch", k), SIZE, label, camera))
            for k, label in enumerate(labels)]
    start = datetime.combine(FIRST, datetime.min.time(), UTC)
    step = timedelta(days=1) / per_day
    n = n_days * per_day
    return pl.DataFrame({
        "image_id": [f"img-{i}" for i in range(n)],
        "camera_id": ["cam-01"] * n,
        "unit_id": [None] * n,
        "ts": [start + i * step for i in range(n)],
        "width": [SIZE] * n,
        "height": [SIZE] * n,
        "label": [labels[i % distinct] for i in range(n)],
        "png": [pool[i % distinct] for i in range(n)],
        "split": ["test"] * n,
    }, schema_overrides={"unit_id": pl.String})


def columns_of(kind: str) -> list[str]:
    return [f"{s}__{stat}" for s in SENSORS[kind] for stat in STATS]


def window_table(machines: int, n_days: int = DAYS) -> pl.DataFrame:
    """``n_days`` days of 10-minute windows of ``machines`` machines (144 windows a day
    each), the three machine types in turn, each reporting its own type's sensors only."""
    rng = np.random.default_rng(0)
    kinds = sorted(SENSORS)
    n = n_days * WINDOWS_A_DAY * machines
    slot, machine = np.divmod(np.arange(n), machines)  # window by window, machines within
    start = datetime.combine(FIRST, datetime.min.time(), UTC)
    frame = pl.DataFrame({
        "machine_id": pl.Series([f"m-{k:03d}" for k in range(machines)])[machine],
        "machine_type": pl.Series([kinds[k % 3] for k in range(machines)])[machine],
        "slot": slot,
        "n_samples": np.full(n, 60, np.int64),
        "is_fault": rng.random(n) < 0.05,
    }).select(
        "machine_id", "machine_type",
        (pl.lit(start).dt.cast_time_unit("us") + pl.duration(minutes=pl.col("slot") * 10))
        .alias("window_start"),
        "n_samples", "is_fault",
    ).with_columns(window_end=pl.col("window_start") + timedelta(minutes=10))
    every_column = sorted({c for k in kinds for c in columns_of(k)})
    values = rng.normal(5, 1, (n, len(every_column)))
    frame = frame.with_columns(pl.Series(c, values[:, j]) for j, c in enumerate(every_column))
    # a machine reports its own type's sensors only
    return frame.with_columns(
        pl.when(pl.col("machine_type").is_in([k for k in kinds if c in columns_of(k)]))
        .then(pl.col(c)).otherwise(None).alias(c) for c in every_column)


def export_models(root: Path) -> tuple[Path, Path]:
    import torch

    from mfg_assets.ml.anomaly import DEFAULT_PARAMS as AE
    from mfg_assets.ml.anomaly import TypeAutoencoder
    from mfg_assets.ml.vision import DEFAULT_PARAMS, DefectNet
    from mfg_assets.sim.config import IMAGE_LABELS

    torch.manual_seed(0)
    classes = sorted(IMAGE_LABELS)
    net = DefectNet(len(classes), DEFAULT_PARAMS["channels"]).eval()
    info = {"image_size": SIZE, "mode": "multiclass", "classes": classes, "normal_class": "ok"}
    vision = batch.export_to_folder("vision_defect", "1", net, info, root / "onnx-vision")
    nets = {k: TypeAutoencoder(len(columns_of(k)), AE["hidden"], AE["latent"]).eval()
            for k in SENSORS}
    info = {"machine_types": {k: {"columns": columns_of(k), "threshold": 2.0} for k in SENSORS}}
    windows = batch.export_to_folder("sensor_anomaly", "1", SimpleNamespace(
        net=nets.__getitem__), info, root / "onnx-windows")
    return vision, windows


# -- the sides -------------------------------------------------------------------------------


def backfill(lake: Lake, model: batch.ExportedModel, n_days: int, args: argparse.Namespace
             ) -> batch.Outcome:
    return batch.predict_days(lake, model, days(n_days), batch_size=args.batch,
                              decode_threads=args.decode_threads, span_rows=args.span_rows)


def bare_images_e2e(onnx: Path, spec: dict, pngs: list[bytes], size: int, threads: int
                    ) -> float:
    """PNG bytes in memory -> decoded and normalised on ``threads`` threads (the edge's
    ``read_png`` and ``normalise``) -> session.run; decode and model take turns."""
    sess = session(onnx)
    name = sess.get_inputs()[0].name
    sess.run(None, {name: batch.decode_prepare(pngs[:1], spec)})  # warm-up, as the backfill's
    share = max(8, -(-size // (2 * threads)))
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for i in range(0, len(pngs), size):
            chunk = pngs[i : i + size]
            parts = pool.map(lambda part: batch.decode_prepare(part, spec),
                             [chunk[j : j + share] for j in range(0, len(chunk), share)])
            sess.run(None, {name: np.concatenate(list(parts))})
    return time.perf_counter() - started


def bare_scoring(onnx: Path, arrays: list[np.ndarray], size: int) -> float:
    """Prepared float32 arrays -> session.run, nothing else."""
    sess = session(onnx)
    name = sess.get_inputs()[0].name
    sess.run(None, {name: arrays[0][:1]})
    started = time.perf_counter()
    for x in arrays:
        for i in range(0, len(x), size):
            sess.run(None, {name: x[i : i + size]})
    return time.perf_counter() - started


def predictor_scoring(model: batch.ExportedModel, arrays: dict[str, np.ndarray], size: int,
                      call: Callable[[Predictor, np.ndarray], object] = batch._score) -> float:
    """The same arrays through the edge's Predictor, as the backfill calls it (images:
    ``_score``, decisions as lists; windows: ``decide_arrays``, kept as arrays)."""
    predictors = {part: model.predictor(part) for part in arrays}
    for part, x in arrays.items():
        predictors[part].decide(x[:1])
    started = time.perf_counter()
    for part, x in arrays.items():
        for i in range(0, len(x), size):
            call(predictors[part], x[i : i + size])
    return time.perf_counter() - started


def read_floor(lake: Lake, model: batch.ExportedModel) -> float:
    """Seconds to read the range's columns that the backfill reads, in one in-memory polars
    query (no streaming, no chunks: the fastest single read found here; pyarrow's
    ``to_table`` took about twice as long)."""
    started = time.perf_counter()
    columns = list(dict.fromkeys(batch.window_columns(model)))
    start = datetime.combine(FIRST, datetime.min.time(), UTC)
    end = start + timedelta(days=DAYS)
    pl.scan_delta(lake.uri(table("features.sensor_windows"))).filter(
        (pl.col("window_start") >= start) & (pl.col("window_start") < end)
    ).select(columns).collect(engine="in-memory")
    return time.perf_counter() - started


def write_floor(frame: pl.DataFrame, folder: Path) -> float:
    """Seconds of one date-partitioned Delta write of ``frame`` into an empty folder."""
    from deltalake import write_deltalake

    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    write_deltalake(str(folder), frame.to_arrow(), partition_by=["date"])
    return time.perf_counter() - started


def child(args: argparse.Namespace) -> None:
    """A backfill of ``--child-days`` days of ``--family`` in this fresh process: peak RSS."""
    lake = Lake(args.lake, {})
    model = batch.load_folder(Path(args.model), args.family)
    for name, part in model.parts.items():  # onnxruntime loaded
        model.predictor(name).decide(np.zeros((1, *part.preprocessing["input"]["shape"][1:]),
                                              np.float32))
    before = status_mib("VmRSS")
    reset = reset_peak_rss()
    outcome = backfill(lake, model, args.child_days, args)
    print(json.dumps({"rows": outcome.scored, "rss_before": before, "peak_reset": reset,
                      "rss_peak": status_mib("VmHWM"), "spans": outcome.spans,
                      "seconds": outcome.seconds["total"]}))


def rss_of(family: str, n_days: int, lake: Path, model: Path, args: argparse.Namespace
           ) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child-days", str(n_days), "--lake", str(lake),
         "--family", family, "--model", str(model), "--batch", str(args.batch),
         "--decode-threads", str(args.decode_threads), "--span-rows", str(args.span_rows)],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run (a minute or two)")
    parser.add_argument("--per-day", type=int, default=0, help="images per day")
    parser.add_argument("--machines", type=int, default=0,
                        help="machines with sensor windows (144 windows a day each)")
    parser.add_argument("--batch", type=int, default=512, help="rows per onnxruntime call")
    parser.add_argument("--decode-threads", type=int, default=batch.DEFAULT_DECODE_THREADS)
    parser.add_argument("--repeat", type=int, default=0, help="runs per side (best kept)")
    parser.add_argument("--span-rows", type=int, default=batch.DEFAULT_SPAN_ROWS,
                        help="feature rows per span (one read and one commit)")
    parser.add_argument("--child-days", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--lake", default="", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="", help=argparse.SUPPRESS)
    parser.add_argument("--family", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_days:
        child(args)
        return
    per_day = args.per_day or (60 if args.quick else 500)
    machines = args.machines or (20 if args.quick else 100)
    repeat = args.repeat or (1 if args.quick else 2)
    figures: dict[str, float] = {"days": DAYS, "batch": args.batch,
                                 "decode_threads": args.decode_threads, "repeat": repeat,
                                 "span_rows": args.span_rows}

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        root = Path(tmp)
        lake_dir = root / "lake"
        lake = Lake(str(lake_dir), {})
        images = image_table(per_day)
        lake.overwrite(table("features.image_dataset"), images)
        windows = window_table(machines)
        lake.overwrite(table("features.sensor_windows"), windows)
        vision_dir, windows_dir = export_models(root)
        vision = batch.load_folder(vision_dir, "vision_defect")
        sensors = batch.load_folder(windows_dir, "sensor_anomaly")

        # -- vision_defect ------------------------------------------------------------------
        spec = vision.parts[""].preprocessing
        pngs = images.get_column("png").to_list()
        n = len(pngs)
        outcomes: list[batch.Outcome] = []

        def run_backfill() -> float:
            outcomes.append(backfill(lake, vision, DAYS, args))
            assert outcomes[-1].scored == n
            return outcomes[-1].seconds["total"]

        backfill_s = bare_s = float("inf")
        for _ in range(repeat):  # interleaved: load on the shared machine hits both alike
            backfill_s = min(backfill_s, run_backfill())
            bare_s = min(bare_s, bare_images_e2e(vision.parts[""].onnx, spec, pngs, args.batch,
                                                 args.decode_threads))
        stages = min(outcomes, key=lambda o: o.seconds["total"]).seconds
        assert lake.read(batch.predictions_table("vision_defect")).height == n

        started = time.perf_counter()
        pixels = batch.decode_pngs(pngs)
        decode_serial_s = time.perf_counter() - started
        prepared = {"": batch.prepare_batch(pixels, spec)}
        del pixels
        score_s = best(lambda: predictor_scoring(vision, prepared, args.batch), repeat)
        bare_score_s = best(lambda: bare_scoring(vision.parts[""].onnx, [prepared[""]],
                                                 args.batch), repeat)
        prepared.clear()

        started = time.perf_counter()
        for d in days(DAYS):
            batch.predict_day(lake, vision, d, batch_size=args.batch,
                              decode_threads=args.decode_threads)
        day_by_day_s = time.perf_counter() - started

        figures |= {
            "vision_rows": n,
            "vision_backfill_rows_per_s": n / backfill_s,
            "vision_bare_e2e_rows_per_s": n / bare_s,
            "vision_e2e_ratio": bare_s / backfill_s,
            "vision_predictor_scoring_rows_per_s": n / score_s,
            "vision_bare_scoring_rows_per_s": n / bare_score_s,
            "vision_scoring_ratio": bare_score_s / score_s,
            # the whole backfill (decode included) against the model alone on decoded arrays
            "vision_backfill_vs_model_alone_ratio": bare_score_s / backfill_s,
            "vision_decode_serial_rows_per_s": n / decode_serial_s,
            "vision_day_by_day_rows_per_s": n / day_by_day_s,
        } | {f"vision_backfill_s_{k}": v for k, v in stages.items()}

        # -- sensor_anomaly -----------------------------------------------------------------
        known = windows.filter(pl.col("machine_type").is_in(list(sensors.parts)))
        arrays = {k: batch.window_matrix(known.filter(pl.col("machine_type") == k),
                                         sensors.parts[k].preprocessing["columns"])
                  for k in sensors.parts}
        m = sum(len(a) for a in arrays.values())
        w_outcomes: list[batch.Outcome] = []

        def run_windows() -> float:
            w_outcomes.append(backfill(lake, sensors, DAYS, args))
            assert w_outcomes[-1].scored == m
            return w_outcomes[-1].seconds["total"]

        w_backfill_s = w_bare_s = float("inf")
        for _ in range(repeat):
            w_backfill_s = min(w_backfill_s, run_windows())
            w_bare_s = min(w_bare_s, sum(bare_scoring(sensors.parts[k].onnx, [a], args.batch)
                                         for k, a in arrays.items()))
        w_stages = min(w_outcomes, key=lambda o: o.seconds["total"]).seconds
        w_score_s = best(lambda: predictor_scoring(sensors, arrays, args.batch,
                                                   Predictor.decide_arrays), repeat)
        # the bare loop's own best batch size (the edge itself scores one window per call)
        other_batches = {b: best(lambda b=b: sum(bare_scoring(sensors.parts[k].onnx, [a], b)
                                                 for k, a in arrays.items()), repeat)
                         for b in (1, 64, 4096)}
        # floors of what the platform must do anyway, each alone: read the range's feature
        # columns from the table's Parquet (pyarrow, one call), write the output (one
        # partitioned Delta write into an empty folder, no checks)
        read_floor_s = best(lambda: read_floor(lake, sensors), repeat)
        written = lake.read(batch.predictions_table("sensor_anomaly"))
        write_floor_s = best(lambda: write_floor(written, root / "floor"), repeat)
        figures |= {
            "windows_rows": m,
            "windows_backfill_rows_per_s": m / w_backfill_s,
            # the windows' matrices are the model input: bare e2e and bare scoring coincide
            "windows_bare_rows_per_s": m / w_bare_s,
            "windows_e2e_ratio": w_bare_s / w_backfill_s,
            "windows_predictor_scoring_rows_per_s": m / w_score_s,
            "windows_scoring_ratio": w_bare_s / w_score_s,
        } | {f"windows_bare_rows_per_s_batch_{b}": m / t for b, t in other_batches.items()
             } | {f"windows_backfill_s_{k}": v for k, v in w_stages.items()} | {
            "windows_bare_s": w_bare_s,
            "windows_read_floor_s": read_floor_s,
            "windows_write_floor_s": write_floor_s,
            # a bare script that reads the Parquet and scores, writing nothing
            "windows_read_floor_and_bare_ratio": (read_floor_s + w_bare_s) / w_backfill_s,
            "windows_ceiling_ratio": w_bare_s / (read_floor_s + w_bare_s + write_floor_s),
        }

        figures["windows_backfill_spans"] = w_outcomes[-1].spans

        # -- memory: 10, 30 and 90 days, each in a fresh process, from a 90-day lakehouse ------
        mem_dir = root / "lake-90d"
        mem_lake = Lake(str(mem_dir), {})
        mem_lake.overwrite(table("features.image_dataset"),
                           image_table(per_day, n_days=MEMORY_DAYS[-1]))
        mem_lake.overwrite(table("features.sensor_windows"),
                           window_table(machines, n_days=MEMORY_DAYS[-1]))
        for family, prefix, folder, rows_a_day in (
                ("vision_defect", "", vision_dir, per_day),
                ("sensor_anomaly", "windows_", windows_dir, m // DAYS)):
            for n_days in MEMORY_DAYS:
                rss = rss_of(family, n_days, mem_dir, folder, args)
                assert rss["rows"] == n_days * rows_a_day
                assert rss["peak_reset"], "VmHWM could not be reset: the peak is the imports'"
                figures[f"{prefix}rss_mib_before_backfill_{n_days}d"] = rss["rss_before"]
                figures[f"{prefix}peak_rss_mib_{n_days}d"] = rss["rss_peak"]
                figures[f"{prefix}spans_{n_days}d"] = rss["spans"]
                figures[f"{prefix}rows_per_s_{n_days}d"] = rss["rows"] / rss["seconds"]
            first, last = MEMORY_DAYS[0], MEMORY_DAYS[-1]
            figures[f"{prefix}peak_rss_growth_{first}d_to_{last}d_mib"] = (
                figures[f"{prefix}peak_rss_mib_{last}d"]
                - figures[f"{prefix}peak_rss_mib_{first}d"])

    report("bench_batch", figures)


if __name__ == "__main__":
    main()
