"""Batch inference over history: a 30-day backfill of predictions/vision_defect.

    python benchmarks/bench_batch.py [--quick] [--per-day N]

One run, same machine, one onnxruntime thread for both sides:

- the backfill: ``fleet.batch.predict_day`` for each of 30 days of a tmp lakehouse's
  ``features.image_dataset`` (simulator images as PNG): Delta read of the day, PNG decode
  and normalisation, the edge's ``Predictor`` in batches, the join with edge predictions,
  the Delta partition write. Rows per second over the whole backfill;
- the baseline: a bare onnxruntime loop (``session.run`` in the same batch size) over the
  same images already decoded and normalised, i.e. the model alone. Their ratio is the
  figure to trust (target >= 0.7: the platform's plumbing costs under 30 %);
- memory: peak RSS (``resource.getrusage``) after the first third of the days and after all
  of them: a backfill holds one day at a time, so the peak must not grow with the range.

The model is the vision family's network (``DefectNet``, default width, untrained: speed
does not depend on the weights) exported by ``fleet.batch.export_to_folder``, as a champion
would be. Prints one line per figure and writes them to data/bench/bench_batch.json.
"""

from __future__ import annotations

import argparse
import io
import resource
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _report import report  # noqa: E402  (benchmarks/ is the script's folder)

from mfg_assets.edge.predictor import prepare_pixels, read_png, session  # noqa: E402
from mfg_assets.fleet import batch  # noqa: E402
from mfg_assets.lake.delta import Lake  # noqa: E402
from mfg_assets.lake.registry import table  # noqa: E402
from mfg_assets.ml.vision import DEFAULT_PARAMS, DefectNet  # noqa: E402
from mfg_assets.sim.config import IMAGE_LABELS, PlantLayout  # noqa: E402
from mfg_assets.sim.images import render  # noqa: E402
from mfg_assets.sim.rng import rng_for  # noqa: E402

SIZE = 64
DAYS = 30
FIRST = date(2026, 11, 1)
CLASSES = sorted(IMAGE_LABELS)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def image_table(per_day: int, distinct: int = 200) -> pl.DataFrame:
    """30 days of images (a pool of rendered ones, reused: rendering is not what we time)."""
    camera = PlantLayout().cameras[0]
    labels = [IMAGE_LABELS[k % len(IMAGE_LABELS)] for k in range(distinct)]
    pool = [png(render(rng_for(3, "bench-batch", k), SIZE, label, camera))
            for k, label in enumerate(labels)]
    start = datetime.combine(FIRST, datetime.min.time(), UTC)
    step = timedelta(days=1) / per_day
    n = DAYS * per_day
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run (under a minute)")
    parser.add_argument("--per-day", type=int, default=0, help="images per day")
    parser.add_argument("--batch", type=int, default=512, help="rows per onnxruntime call")
    args = parser.parse_args()
    per_day = args.per_day or (60 if args.quick else 500)

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        root = Path(tmp)
        lake = Lake(str(root / "lake"), {})
        frame = image_table(per_day)
        lake.overwrite(table("features.image_dataset"), frame)
        net = DefectNet(len(CLASSES), DEFAULT_PARAMS["channels"]).eval()
        info = {"image_size": SIZE, "mode": "multiclass", "classes": CLASSES,
                "normal_class": "ok"}
        started = time.perf_counter()
        folder = batch.export_to_folder("vision_defect", "1", net, info, root / "onnx")
        export_s = time.perf_counter() - started
        model = batch.load_folder(folder, "vision_defect")
        rss_before = peak_rss_mib()

        started = time.perf_counter()
        rss_third = 0.0
        scored = 0
        for d in range(DAYS):
            scored += batch.predict_day(lake, model, FIRST + timedelta(days=d),
                                        batch_size=args.batch).scored
            if d == DAYS // 3 - 1:
                rss_third = peak_rss_mib()
        backfill_s = time.perf_counter() - started
        rss_end = peak_rss_mib()
        assert scored == frame.height == lake.read(batch.predictions_table(
            "vision_defect")).height

        # the model alone: the same images, decoded and normalised beforehand, same batches
        spec = model.parts[""].preprocessing
        x = np.concatenate([prepare_pixels(read_png(p), spec)
                            for p in frame.get_column("png").to_list()])
        sess = session(model.parts[""].onnx)
        name = sess.get_inputs()[0].name
        sess.run(None, {name: x[:1]})  # warm-up, as the backfill's first call warms its own
        started = time.perf_counter()
        for i in range(0, len(x), args.batch):
            sess.run(None, {name: x[i : i + args.batch]})
        bare_s = time.perf_counter() - started

    backfill_rps = scored / backfill_s
    bare_rps = len(x) / bare_s
    report("bench_batch", {
        "backfill_days": DAYS,
        "backfill_rows": scored,
        "backfill_rows_per_s": backfill_rps,
        "bare_onnxruntime_rows_per_s": bare_rps,
        "backfill_vs_bare_ratio": backfill_rps / bare_rps,
        "export_s": export_s,
        "peak_rss_mib_before_backfill": rss_before,
        "peak_rss_mib_after_first_third": rss_third,
        "peak_rss_mib_after_backfill": rss_end,
        "peak_rss_growth_last_two_thirds_mib": rss_end - rss_third,
    })


if __name__ == "__main__":
    main()
