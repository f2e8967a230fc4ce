"""A verified bundle made runnable: an onnxruntime session plus its preprocessing.

Preprocessing JSON (``preprocessing.json`` in the bundle), by kind:

    {"kind": "image",
     "input": {"name": "input", "shape": [null, 1, 64, 64], "dtype": "float32"},
     "image_size": 64,
     "normalisation": {"type": "per_image", "min_std": 1.0}   # or fixed: mean/std, or scale
     "output": "logits", "classes": ["dent", "missing_part", "ok", "scratch"],
     "normal_class": "ok"}

    {"kind": "sensor_window",
     "input": {"name": "input", "shape": [null, 40], "dtype": "float32"},
     "window": {"machine_type": "welder", "every_s": 600, "columns": [...], "min_samples": 30},
     "output": "score"}

Scores are "higher = more abnormal" for every kind, so one per-edge threshold means the
same thing everywhere: for a classifier the score is ``1 - p(normal_class)``; for an
autoencoder it is the reconstruction error the model outputs.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from mfg_assets.edge import detection
from mfg_assets.edge.bundle import Bundle, BundleError
from mfg_assets.edge.windows import WindowSpec


@dataclass(frozen=True, slots=True)
class Prediction:
    value: str | float | bool | None
    score: float
    detections: dict[str, Any] | None = None  # detection bundles: missing slots, boxes found


def image_preprocessing(
    image_size: int,
    classes: list[str] | None = None,
    normal_class: str = "ok",
    normalisation: dict[str, Any] | None = None,
    output: str = "logits",
) -> dict[str, Any]:
    """Preprocessing JSON of an image bundle (defaults: the vision model's conventions)."""
    doc: dict[str, Any] = {
        "kind": "image",
        "input": {"name": "input", "shape": [None, 1, image_size, image_size], "dtype": "float32"},
        "image_size": image_size,
        "normalisation": normalisation or {"type": "per_image", "min_std": 1.0},
        "output": output,
        "normal_class": normal_class,
    }
    if classes is not None:
        doc["classes"] = list(classes)
    return doc


def detection_preprocessing(image_size: int, classes: list[str], layout: list[dict[str, Any]],
                            box_score: float) -> dict[str, Any]:
    """Preprocessing JSON of a part detection bundle (output: decoded detections)."""
    doc = image_preprocessing(image_size, classes, output="detections")
    return doc | {"layout": list(layout), "box_score": box_score}


def window_preprocessing(spec: WindowSpec) -> dict[str, Any]:
    return {
        "kind": "sensor_window",
        "input": {"name": "input", "shape": [None, len(spec.columns)], "dtype": "float32"},
        "window": spec.to_dict(),
        "output": "score",
    }


def session(path: Path | str | bytes, threads: int = 1) -> ort.InferenceSession:
    """A CPU session; one intra-op thread by default (edge boxes are small and shared)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def read_png(png: bytes) -> np.ndarray:
    """PNG bytes -> uint8 grayscale pixels (raises on a corrupt image)."""
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"))


def prepare_pixels(pixels: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """uint8 pixels -> float32 (1, 1, size, size), resized and normalised as the spec says."""
    size = int(spec["image_size"])
    if pixels.shape != (size, size):
        img = Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR)
        pixels = np.asarray(img)
    x = pixels.astype(np.float32)[None, None]
    return normalise(x, spec["normalisation"])


def decode_image(png: bytes, spec: dict[str, Any]) -> np.ndarray:
    return prepare_pixels(read_png(png), spec)


def normalise(x: np.ndarray, how: dict[str, Any]) -> np.ndarray:
    """Per-image standardisation (what the vision model trains with), fixed, or /255."""
    kind = how.get("type", "per_image")
    if kind == "per_image":
        mean = x.mean(axis=(2, 3), keepdims=True)
        std = x.std(axis=(2, 3), keepdims=True)
        return (x - mean) / np.maximum(std, float(how.get("min_std", 1.0)))
    if kind == "fixed":
        return (x - float(how["mean"])) / float(how["std"])
    if kind == "scale":
        return x / 255.0
    raise ValueError(f"unknown normalisation {kind!r}")


# decide()'s texts of False/True, picked by index: no string built per row
_FALSE_TRUE = np.array(["false", "true"], dtype=object)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Predictor:
    """Runs one bundle. Not thread-safe by design: the runtime scores on one thread."""

    def __init__(self, bundle: Bundle, threads: int = 1) -> None:
        self.bundle: Bundle | None = bundle
        try:
            self._setup(bundle.model_path, bundle.preprocessing, bundle.threshold, threads)
        except Exception as exc:
            raise BundleError(f"bundle {bundle.bundle_id}: model does not load: {exc}") from exc

    @classmethod
    def from_files(
        cls, model_file: Path, preprocessing: dict[str, Any], threshold: float = float("nan"),
        threads: int = 1,
    ) -> Predictor:
        """A predictor outside any bundle: to calibrate thresholds before the bundle exists."""
        predictor = cls.__new__(cls)
        predictor.bundle = None
        predictor._setup(Path(model_file), dict(preprocessing), threshold, threads)
        return predictor

    def _setup(self, model: Path, spec: dict[str, Any], threshold: float, threads: int) -> None:
        self.spec = spec
        self.kind = spec["kind"]
        self.threshold = threshold
        self.session = session(model, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.window = WindowSpec.from_dict(spec["window"]) if "window" in spec else None
        classes = spec.get("classes")
        self.classes: list[str] | None = list(classes) if classes else None
        normal = spec.get("normal_class", "ok")
        self.normal_index = (
            self.classes.index(normal) if self.classes and normal in self.classes else None
        )
        self.layout: list[dict[str, Any]] = list(spec.get("layout", []))

    @property
    def bundle_id(self) -> str:
        return self.bundle.bundle_id if self.bundle else "unbundled"

    @property
    def model(self) -> str:
        return self.bundle.model_name if self.bundle else "unbundled"

    def input_shape(self, batch: int = 1) -> tuple[int, ...]:
        shape = self.spec["input"]["shape"]
        return (batch, *(int(d) for d in shape[1:]))

    def warm_up(self) -> None:
        """Run once on a neutral input: a bundle that loads but cannot run is refused here,
        before it replaces a working one."""
        scores = self.scores(np.zeros(self.input_shape(1), np.float32))
        if scores.shape != (1,):
            raise BundleError(f"bundle {self.bundle_id}: output shape {scores.shape} per input")

    def raw(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, np.float32)})[0]

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Higher = more abnormal, one per row."""
        out = self.raw(x)
        if self.spec["output"] == "detections":
            return detection.image_scores(out, self.classes or [], self.layout)
        if self.spec["output"] == "logits":
            probs = _softmax(out.reshape(len(out), -1))
            if self.normal_index is None:
                return 1.0 - probs.max(axis=1)
            return 1.0 - probs[:, self.normal_index]
        return out.reshape(len(out), -1)[:, 0].astype(np.float64)

    def decide(self, x: np.ndarray) -> list[Prediction]:
        out = self.raw(x)
        if self.spec["output"] == "detections":
            return [self._detections(dets) for dets in out]
        if self.spec["output"] == "logits":
            logits = out.reshape(len(out), -1)
            probs = _softmax(logits)
            preds = []
            for row in probs:
                if self.normal_index is None:
                    preds.append(Prediction(self._name(int(row.argmax())), float(1 - row.max())))
                    continue
                score = float(1.0 - row[self.normal_index])
                if score <= self.threshold:
                    preds.append(Prediction(self._name(self.normal_index), score))
                else:  # the most likely defect class
                    defects = row.copy()
                    defects[self.normal_index] = -1.0
                    preds.append(Prediction(self._name(int(defects.argmax())), score))
            return preds
        scores = out.reshape(len(out), -1)[:, 0]
        return [Prediction(bool(s > self.threshold), float(s)) for s in scores]

    def decide_arrays(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores, value texts) for a batch, the same decisions as ``decide`` without a
        Python object per row (batch scoring of history runs millions of windows)."""
        out = self.raw(x)
        if self.spec["output"] == "detections":
            preds = [self._detections(dets) for dets in out]
            return (np.array([p.score for p in preds], np.float64),
                    np.array([str(p.value) for p in preds], dtype=object))
        if self.spec["output"] == "logits":
            probs = _softmax(out.reshape(len(out), -1))
            names = np.array([str(self._name(i)) for i in range(probs.shape[1])], dtype=object)
            if self.normal_index is None:
                return 1.0 - probs.max(axis=1), names[probs.argmax(axis=1)]
            scores = 1.0 - probs[:, self.normal_index]
            defects = probs.copy()
            defects[:, self.normal_index] = -1.0
            index = np.where(scores <= self.threshold, self.normal_index, defects.argmax(axis=1))
            return scores.astype(np.float64), names[index]
        scores = out.reshape(len(out), -1)[:, 0].astype(np.float64)
        return scores, _FALSE_TRUE[(scores > self.threshold).astype(np.intp)]

    def _detections(self, dets: np.ndarray) -> Prediction:
        """``ok`` or ``missing_part`` (the vision vocabulary), with the slots and boxes."""
        found = detection.decide(dets, self.classes or [], self.layout, self.threshold,
                                 float(self.spec.get("box_score", 0.3)))
        value = "missing_part" if found["missing"] else "ok"
        return Prediction(value, found.pop("score"), found)

    def _name(self, index: int) -> str | int:
        return self.classes[index] if self.classes else index

    def predict_image(self, png: bytes) -> Prediction:
        return self.decide(decode_image(png, self.spec))[0]

    def predict_pixels(self, pixels: np.ndarray) -> Prediction:
        return self.decide(prepare_pixels(pixels, self.spec))[0]

    def predict_vector(self, vector: np.ndarray) -> Prediction:
        return self.decide(vector.reshape(1, -1))[0]


def calibration_scores(
    model_file: Path, preprocessing: dict[str, Any], inputs: list[np.ndarray] | np.ndarray
) -> np.ndarray:
    """Scores of an edge's normal data through the exact path the edge will use (ONNX file,
    preprocessing), for :func:`mfg_assets.edge.bundle.calibrate_threshold` before the bundle
    exists. ``inputs``: uint8 pixel arrays for images, feature vectors for windows."""
    predictor = Predictor.from_files(model_file, preprocessing)
    if predictor.kind == "image":
        x = np.concatenate([prepare_pixels(np.asarray(p), predictor.spec) for p in inputs])
    else:
        x = np.asarray(inputs, dtype=np.float32)
    return np.concatenate([predictor.scores(x[i : i + 256]) for i in range(0, len(x), 256)])
