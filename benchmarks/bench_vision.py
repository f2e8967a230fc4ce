"""Vision: image import throughput, training time, and balanced accuracy against baselines.

    python benchmarks/bench_vision.py [--quick] [--images N] [--size PX] [--threads N]

On the hard simulated inspection set (``mfg_assets.sim.hard_images``: 300 px grayscale, one
defect in three, subtle defects, four cameras, no times):

- import: ``import_images`` into a throw-away lake, in images/s, against a bare loop that
  only decodes the same files in the same run (the ratio is what matters on a noisy machine);
- training: seconds for ``vision.train`` with the first candidate of a budget-1 search, and
  its system/user CPU time ratio (thread oversubscription shows up as system time);
- balanced accuracy and defect recall on the test split of the vision family, the majority
  class, and logistic regression on 32 px downscaled, standardised pixels (scikit-learn).

``--quick``: 300 images at 128 px, one epoch; ends within a minute. Prints one line per
figure and writes them as flat JSON to data/bench/bench_vision.json.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from _report import report
from PIL import Image


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def bench_import(frame: pl.DataFrame, figures: dict[str, float]) -> None:
    from mfg_assets.lake.delta import Lake
    from mfg_assets.lake.importers import import_images
    from mfg_assets.sim.hard_images import write_folder

    with tempfile.TemporaryDirectory() as tmp:
        labels = write_folder(frame, Path(tmp) / "images")
        files = sorted((Path(tmp) / "images").rglob("*.png"))
        start = time.perf_counter()
        for path in files:  # the floor: read and decode every file once, nothing else
            with Image.open(io.BytesIO(path.read_bytes())) as img:
                img.convert("L").load()
        bare = len(files) / (time.perf_counter() - start)
        lake = Lake(str(Path(tmp) / "lake"))
        warm = write_folder(frame.head(3), Path(tmp) / "warm")  # module imports, not timed
        import_images(Lake(str(Path(tmp) / "warm-lake")), Path(tmp) / "warm", warm)
        start = time.perf_counter()
        result = import_images(lake, Path(tmp) / "images", labels)
        rate = len(files) / (time.perf_counter() - start)
    figures["import_images"] = len(files)
    figures["import_images_per_s"] = rate
    figures["bare_decode_images_per_s"] = bare
    figures["import_vs_bare_decode_ratio"] = rate / bare
    figures["import_rows_silver"] = result.rows_written.get("silver.inspection_images", 0)


def baselines(frame: pl.DataFrame, side: int = 32) -> dict[str, dict[str, float]]:
    """Majority class and logistic regression on downscaled pixels, on the test split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, recall_score

    from mfg_assets.ml import vision

    def xy(split: str) -> tuple[np.ndarray, np.ndarray]:
        rows = frame.filter(pl.col("split") == split)
        x = vision.standardise(vision.pixels(rows.get_column("png").to_list(), side))
        return x.reshape(len(x), -1), (rows.get_column("label") != "ok").to_numpy()

    x_train, y_train = xy("train")
    x_test, y_test = xy("test")
    majority = np.full(len(y_test), bool(np.mean(y_train) > 0.5))
    model = LogisticRegression(C=0.01, class_weight="balanced", max_iter=2000)
    predicted = model.fit(x_train, y_train).predict(x_test)
    out = {}
    for name, guess in (("majority", majority), ("logreg_pixels", predicted)):
        out[name] = {
            "balanced_accuracy": float(balanced_accuracy_score(y_test, guess)),
            "recall_defect": float(recall_score(y_test, guess, zero_division=0)),
        }
    return out


def bench_train(
    frame: pl.DataFrame, params: dict, threads: int | None, figures: dict[str, float]
) -> None:
    from mfg_assets.ml import vision

    trial = {**vision.search_space(1, 0)[0], **params, "threads": threads, "disk_cache": False}
    user, system = _cpu()
    start = time.perf_counter()
    trained = vision.train(frame, trial, seed=0)
    figures["train_seconds"] = time.perf_counter() - start
    user2, system2 = _cpu()
    # CPU seconds: on a shared machine wall time also counts other people's work
    figures["train_cpu_seconds"] = (user2 - user) + (system2 - system)
    figures["train_sys_over_user_cpu"] = (system2 - system) / max(user2 - user, 1e-9)
    figures["train_threads"] = trained.info.get("threads", threads or 0)
    figures["train_image_size"] = trained.info["image_size"]
    figures["train_epochs_run"] = trained.info["epochs_run"]
    held = trained.holdout_metrics
    figures["vision_balanced_accuracy"] = held["balanced_accuracy"]
    figures["vision_recall_defect"] = held["recall_defect"]
    figures["vision_accuracy"] = held["accuracy"]
    for name, metrics in baselines(frame).items():
        figures[f"{name}_balanced_accuracy"] = metrics["balanced_accuracy"]
        figures[f"{name}_recall_defect"] = metrics["recall_defect"]
    figures["vision_minus_logreg_balanced_accuracy"] = (
        held["balanced_accuracy"] - figures["logreg_pixels_balanced_accuracy"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small and fast (under a minute)")
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: the family's, vision.default_threads)")
    parser.add_argument("--frame", help="a parquet of hard_set() to reuse (skips generating)")
    parser.add_argument("--save-frame", help="write the generated set to this parquet")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from mfg_assets.sim.hard_images import hard_set

    n, size, params = args.images, args.size, {}
    if args.quick:
        n, size, params = 300, 128, {"epochs": 1}
    start = time.perf_counter()
    frame = pl.read_parquet(args.frame) if args.frame else hard_set(n, size, seed=0)
    if args.save_frame:
        frame.write_parquet(args.save_frame)
    figures: dict[str, float] = {
        "images": frame.height, "image_side": size, "load_average_1m": os.getloadavg()[0],
        "cpu_cores_visible": len(os.sched_getaffinity(0)),
        "generate_seconds": time.perf_counter() - start,
    }
    bench_import(frame, figures)
    bench_train(frame, params, args.threads, figures)
    report("bench_vision", figures)


if __name__ == "__main__":
    main()
