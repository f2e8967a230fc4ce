"""Edge inference on CPU: our vision bundle (int8, fp32) vs torch eager vs ResNet50 eager.

    python benchmarks/bench_edge.py [--quick] [--threads N]

One run, same machine, same thread count (default 1: an edge box is small and shares its
cores), so the ratios are the figures to trust:

- the vision model of ``mfg_assets.ml.vision`` (DefectNet, default width), trained briefly
  on simulator images, exported to ONNX, statically quantized to int8 (the same gate as
  production: kept only within one point of fp32 accuracy), built into signed bundles and
  run through the edge runtime's ``Predictor`` (PNG pixels -> normalise -> onnxruntime ->
  decision): per-image latency p50/p99 for int8 and fp32;
- the same network in torch eager (same preprocessing), per image;
- a ResNet50 (plain torch, random weights, nothing downloaded) in eager fp32 at 224 px,
  per image: the "just use a standard backbone" baseline;
- sensor windows: rolling-window featurization of simulated welder readings plus scoring by
  an exported autoencoder, windows per second;
- accuracy of int8 vs fp32 on a labelled simulator test set, in points;
- the device side: import time of the edge runtime + ``mfg-edge`` in a fresh interpreter
  (median of 5) beside ``import torch`` (what it loaded before the export moved to fleet/),
  and the installed size of an edge venv (``pip install '.[edge]'``, built once under
  data/bench/edge-venv, or ``--edge-venv DIR``) beside this full venv's.

Prints one line per figure and writes them as flat JSON to data/bench/bench_edge.json.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _report import report  # noqa: E402  (benchmarks/ is the script's folder)

from mfg_assets.edge import signing  # noqa: E402
from mfg_assets.edge.bundle import build_bundle, threshold_entry, verify_bundle  # noqa: E402
from mfg_assets.edge.predictor import (  # noqa: E402
    Predictor,
    calibration_scores,
    image_preprocessing,
    normalise,
    prepare_pixels,
    window_preprocessing,
)
from mfg_assets.edge.windows import RollingWindows, WindowSpec, columns_of  # noqa: E402
from mfg_assets.fleet.export import QuantCheck, export_model  # noqa: E402
from mfg_assets.ml.anomaly import TypeAutoencoder  # noqa: E402
from mfg_assets.ml.vision import DEFAULT_PARAMS, DefectNet  # noqa: E402
from mfg_assets.sim import SimConfig  # noqa: E402
from mfg_assets.sim.config import IMAGE_LABELS, PlantLayout  # noqa: E402
from mfg_assets.sim.images import render  # noqa: E402
from mfg_assets.sim.rng import rng_for  # noqa: E402
from mfg_assets.sim.welding import SENSORS, welder_messages  # noqa: E402

SIZE = 64
CLASSES = sorted(IMAGE_LABELS)


# -- ResNet50, plain torch ---------------------------------------------------------------------


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        c_out = width * 4
        self.body = nn.Sequential(
            nn.Conv2d(c_in, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.skip = (
            nn.Identity() if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


def resnet50(n_classes: int = 1000) -> nn.Module:
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    ]
    c_in = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for k in range(blocks):
            layers.append(Bottleneck(c_in, width, stride if k == 0 else 1))
            c_in = width * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, n_classes)]
    return nn.Sequential(*layers).eval()


# -- data and models ---------------------------------------------------------------------------


def images(n: int, seed: int, camera_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    camera = PlantLayout().cameras[camera_index]
    labels = [IMAGE_LABELS[k % len(IMAGE_LABELS)] for k in range(n)]
    pixels = np.stack([render(rng_for(seed, "bench-edge", k), SIZE, label, camera)
                       for k, label in enumerate(labels)])
    return pixels, np.array([CLASSES.index(label) for label in labels])


def model_inputs(pixels: np.ndarray) -> np.ndarray:
    return normalise(pixels.astype(np.float32)[:, None], {"type": "per_image", "min_std": 1.0})


def train_vision(n: int, epochs: int) -> DefectNet:
    pixels, labels = images(n, seed=1)
    x, y = torch.from_numpy(model_inputs(pixels)), torch.from_numpy(labels)
    torch.manual_seed(0)
    net = DefectNet(len(CLASSES), DEFAULT_PARAMS["channels"])
    optimiser = torch.optim.AdamW(net.parameters(), lr=DEFAULT_PARAMS["lr"])
    steps = epochs * ((n + 31) // 32)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, DEFAULT_PARAMS["lr"], steps)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(n).split(32):
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    return net.eval()


def latencies(fn: Callable[[int], object], n: int, warmup: int = 3) -> np.ndarray:
    for k in range(warmup):
        fn(k)
    out = np.empty(n)
    for k in range(n):
        start = time.perf_counter()
        fn(k)
        out[k] = (time.perf_counter() - start) * 1000.0
    return out


# -- the run -----------------------------------------------------------------------------------


def import_s(python: str, modules: str, runs: int = 5) -> float:
    """Median seconds to import ``modules`` in a fresh interpreter (start-up excluded)."""
    code = f"import time; t = time.perf_counter(); import {modules}; " \
        "print(time.perf_counter() - t)"
    times = [float(subprocess.run([python, "-c", code], capture_output=True, text=True,
                                  check=True, cwd=ROOT).stdout) for _ in range(runs)]
    return float(np.median(times))


def dir_mib(path: Path) -> float:
    files = (p for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return sum(p.lstat().st_size for p in files) / 2**20


def edge_venv(target: Path) -> Path:
    """A venv with only ``mfg_assets[edge]``, installed from a copy of the sources."""
    if (target / "bin" / "mfg-edge").exists():
        return target
    source = target.with_name(target.name + "-src")
    shutil.rmtree(source, ignore_errors=True)
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "mfg_assets", source / "mfg_assets",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(target)], check=True)
    subprocess.run([str(target / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    f"{source}[edge]"], check=True)
    shutil.rmtree(source, ignore_errors=True)
    return target


def device_figures(figures: dict[str, float], quick: bool, venv_dir: Path) -> None:
    edge = "mfg_assets.edge.runtime, mfg_assets.edge.cli"
    figures["edge_runtime_import_s"] = import_s(sys.executable, edge)
    figures["torch_import_s"] = import_s(sys.executable, "torch")
    figures["edge_import_over_torch_import"] = (
        figures["edge_runtime_import_s"] / figures["torch_import_s"])
    figures["full_venv_mib"] = dir_mib(Path(sys.prefix))
    if quick and not (venv_dir / "bin" / "mfg-edge").exists():
        print(f"(--quick: no edge venv at {venv_dir}; run once without --quick to build it)")
        return
    venv = edge_venv(venv_dir)
    figures["edge_venv_mib"] = dir_mib(venv)
    figures["edge_venv_over_full_venv"] = figures["edge_venv_mib"] / figures["full_venv_mib"]
    figures["edge_venv_runtime_import_s"] = import_s(str(venv / "bin" / "python"), edge)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run (under a minute)")
    parser.add_argument("--threads", type=int, default=1, help="torch/onnxruntime threads")
    parser.add_argument("--edge-venv", type=Path, default=ROOT / "data" / "bench" / "edge-venv",
                        help="edge-only venv to measure (built there once if missing)")
    parser.add_argument("--device-only", action="store_true",
                        help="only the device figures (import time, install size)")
    args = parser.parse_args()
    quick = args.quick
    torch.set_num_threads(args.threads)
    figures: dict[str, float] = {}
    device_figures(figures, quick, args.edge_venv)
    if args.device_only:
        report("bench_edge", figures)
        return

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        private_path, public_path = signing.generate_keypair(tmp / "keys")
        private = signing.load_private_key(private_path)
        public = signing.load_public_key(public_path)

        # -- vision: train, export, quantize (gated), bundle ---------------------------------
        started = time.perf_counter()
        net = train_vision(320 if quick else 1600, 4 if quick else 8)
        figures["vision_train_s"] = time.perf_counter() - started
        test_pixels, test_labels = images(200 if quick else 800, seed=2)
        test_x = model_inputs(test_pixels)
        export = export_model(
            net, test_x[:1], tmp / "export", quantization="static",
            calibration=model_inputs(images(64, seed=3)[0]),
            check=QuantCheck(test_x, labels=test_labels),
        )
        figures["vision_accuracy_fp32"] = export.metrics["accuracy_fp32"]
        figures["vision_accuracy_int8"] = export.metrics["accuracy_int8"]
        figures["vision_int8_accuracy_loss_points"] = 100 * export.metrics["loss"]
        figures["vision_int8_kept"] = float(export.precision == "int8")
        spec = image_preprocessing(SIZE, CLASSES)
        ok = test_pixels[test_labels == CLASSES.index("ok")]
        predictors = {}
        int8_path = tmp / "export" / "model.int8.onnx"
        for precision, path in (("int8", int8_path), ("fp32", export.fp32_path)):
            scores = calibration_scores(path, spec, ok)
            bundle = build_bundle(
                tmp / f"bundle-{precision}", edge_id="edge-cam01", model_file=path,
                preprocessing=spec, threshold=threshold_entry(scores, 0.99, "bench"),
                model_name="vision_defect", model_version=1,
                export={"precision": precision}, private_key=private,
            )
            predictors[precision] = Predictor(verify_bundle(bundle.path, public), args.threads)

        n_img = 150 if quick else 1000
        for precision, predictor in predictors.items():
            def infer(k: int, p: Predictor = predictor) -> None:
                p.predict_pixels(test_pixels[k % len(test_pixels)])

            ms = latencies(infer, n_img)
            figures[f"vision_bundle_{precision}_p50_ms"] = float(np.percentile(ms, 50))
            figures[f"vision_bundle_{precision}_p99_ms"] = float(np.percentile(ms, 99))

        def eager(k: int) -> None:
            x = prepare_pixels(test_pixels[k % len(test_pixels)], spec)
            with torch.inference_mode():
                net(torch.from_numpy(x)).argmax(1)

        ms = latencies(eager, 60 if quick else 300)
        figures["vision_torch_eager_p50_ms"] = float(np.percentile(ms, 50))
        figures["vision_torch_eager_p99_ms"] = float(np.percentile(ms, 99))

        big = resnet50()
        frame = torch.randn(1, 3, 224, 224)

        def resnet(k: int) -> None:
            with torch.inference_mode():
                big(frame).argmax(1)

        ms = latencies(resnet, 8 if quick else 40, warmup=1)
        figures["resnet50_eager_224_p50_ms"] = float(np.percentile(ms, 50))
        figures["resnet50_eager_224_p99_ms"] = float(np.percentile(ms, 99))
        for precision in ("int8", "fp32"):
            figures[f"resnet50_over_bundle_{precision}_p50"] = (
                figures["resnet50_eager_224_p50_ms"] / figures[f"vision_bundle_{precision}_p50_ms"]
            )
        figures["torch_eager_over_bundle_int8_p50"] = (
            figures["vision_torch_eager_p50_ms"] / figures["vision_bundle_int8_p50_ms"]
        )

        # -- sensor windows: featurize + score -------------------------------------------------
        columns = columns_of([name for name, _ in SENSORS])
        torch.manual_seed(0)
        ae = TypeAutoencoder(len(columns), 32, 6).eval()
        ae_export = export_model(ae, np.ones((1, len(columns)), np.float32), tmp / "ae")
        wspec = WindowSpec("welder", 600.0, tuple(columns), min_samples=30)  # as trained
        ae_bundle = build_bundle(
            tmp / "bundle-ae", edge_id="edge-weld1", model_file=ae_export.path,
            preprocessing=window_preprocessing(wspec),
            threshold=threshold_entry(np.linspace(0, 1, 50), 0.99, "bench"),
            model_name="sensor_anomaly", model_version=1, private_key=private,
        )
        scorer = Predictor(verify_bundle(ae_bundle.path, public), args.threads)
        config = SimConfig(duration_h=6.0 if quick else 48.0, sources=("welding",))
        feed = [
            (w.machine_id, m.doc["timestamp"], {r["sensor"]: r["value"] for r in m.doc["readings"]})
            for w in config.plant.welders for m in welder_messages(config, w)
        ]
        windows = RollingWindows(wspec)
        scored = 0
        started = time.perf_counter()
        for machine, ts, readings in feed:
            done = windows.add(machine, "welder", ts, readings)
            if done is not None and done.scored:
                scorer.predict_vector(done.vector)
                scored += 1
        elapsed = time.perf_counter() - started
        figures["sensor_windows_per_s"] = scored / elapsed
        figures["sensor_readings_per_s"] = len(feed) / elapsed

    report("bench_edge", figures)


if __name__ == "__main__":
    main()
