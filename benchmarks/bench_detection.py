"""Part detection: mAP@0.5 and missing-part recall against a layout prior, edge latency.

    python benchmarks/bench_detection.py [--quick] [--boards N] [--size PX]

On simulated assemblies (``mfg_assets.sim.assemblies``: six slots, each missing one time
in ten):

- ``detection_map50``: mAP at IoU 0.5 on the test split of the ``part_detection`` family
  trained from scratch with its default parameters; ``missing_recall`` / ``missing_precision``
  of its slot decisions;
- baseline in the same run, the *layout prior*: every nominal slot box of the learnt layout
  reported as present with full confidence (what a fixture-position check would say). Its
  mAP is high (parts barely move) and it never finds a missing part;
- edge latency: the exported ONNX bundle (decode inside the graph) through the edge
  ``Predictor`` (PNG decode, normalisation, slot decisions), one image at a time, p50/p95 in
  ms, against the bare onnxruntime call on the same prepared input.

``--quick``: 240 boards at 64 px and a lighter network; ends within a minute or two on a
quiet machine. Prints one line per figure and writes them to data/bench/bench_detection.json.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import report


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def layout_prior(info: dict, n: int) -> np.ndarray:
    """(n, K, 6) detections: each layout slot's nominal box, score 1."""
    from mfg_assets.sim.assemblies import HALF_SIZE

    size = info["image_size"]
    rows = []
    for slot in info["layout"]:
        hw, hh = (h * size for h in HALF_SIZE[slot["cls"]])
        rows.append([1.0, info["classes"].index(slot["cls"]), slot["cx"] - hw, slot["cy"] - hh,
                     slot["cx"] + hw, slot["cy"] + hh])
    return np.repeat(np.array(rows, np.float32)[None], n, axis=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--boards", type=int, default=None)
    parser.add_argument("--size", type=int, default=None)
    args = parser.parse_args(argv)
    boards = args.boards or (240 if args.quick else 400)
    size = args.size or (64 if args.quick else 96)
    params = {"channels": 8, "epochs": 8, "batch_size": 16, "lr": 6e-3} if args.quick else {}

    from mfg_assets.edge.predictor import Predictor, detection_preprocessing, session
    from mfg_assets.fleet.export import export_model
    from mfg_assets.ml import detection
    from mfg_assets.sim import assemblies

    figures: dict[str, float] = {}
    frame = assemblies.dataset(boards, seed=11, size=size)
    start, cpu = time.perf_counter(), _cpu_s()
    trained = detection.train(frame, params, seed=0)
    figures["detection_train_s"] = time.perf_counter() - start
    # CPU seconds: on a shared machine the wall time says more about the neighbours
    figures["detection_train_cpu_s"] = _cpu_s() - cpu
    held = trained.holdout_metrics
    figures["detection_map50"] = held["map50"]
    figures["detection_missing_recall"] = held.get("missing_recall", float("nan"))
    figures["detection_missing_precision"] = held.get("missing_precision", float("nan"))

    test = frame.filter(split="test")
    info = trained.info
    truths = [[(c, *box) for c, *box in detection.parse_boxes(b)]
              for b in test.get_column("boxes")]
    scale = info["image_size"] / size
    truths = [[(c, *(v * scale for v in box)) for c, *box in t] for t in truths]
    prior = layout_prior(info, test.height)
    figures["prior_map50"] = detection.mean_average_precision(prior, truths, info["classes"])
    figures["prior_missing_recall"] = 0.0  # it reports every slot as filled
    figures["map50_vs_prior"] = figures["detection_map50"] / max(figures["prior_map50"], 1e-9)

    with tempfile.TemporaryDirectory() as tmp:
        x = detection.decode(test.get_column("png").head(1).to_list(), info["image_size"])
        export = export_model(trained.model, x, Path(tmp) / "export")
        spec = detection_preprocessing(info["image_size"], info["classes"], info["layout"],
                                       info["box_score"])
        predictor = Predictor.from_files(export.path, spec, threshold=info["threshold"])
        pngs = test.get_column("png").to_list()
        for png in pngs[:10]:  # warm up
            predictor.predict_image(png)
        served, bare = [], []
        sess = session(export.path)
        for png in pngs:
            t0 = time.perf_counter()
            predictor.predict_image(png)
            served.append(time.perf_counter() - t0)
            x = detection.decode([png], info["image_size"])
            t0 = time.perf_counter()
            sess.run(None, {"input": x})
            bare.append(time.perf_counter() - t0)
    figures["edge_p50_ms"] = 1000 * float(np.percentile(served, 50))
    figures["edge_p95_ms"] = 1000 * float(np.percentile(served, 95))
    figures["onnx_only_p50_ms"] = 1000 * float(np.percentile(bare, 50))
    figures["edge_overhead_ratio"] = figures["edge_p50_ms"] / max(figures["onnx_only_p50_ms"],
                                                                   1e-9)
    report("bench_detection", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
