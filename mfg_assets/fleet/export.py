"""torch ``nn.Module`` -> ONNX, checked against torch, optionally quantized to int8.

    result = export_model(net, example, out_dir, quantization="static",
                          calibration=images[:64], check=QuantCheck(images, labels))
    result.path, result.precision, result.reason   # recorded in the bundle manifest

Quantization choice (``quantization=``):

- ``"dynamic"`` for MLPs (the sensor autoencoder): weights are int8, activations are
  quantized per batch at run time. Linear layers dominate and there is nothing to
  calibrate, and the in-graph standardisation (log, NaN handling) stays fp32.
- ``"static"`` for CNNs (the vision model): convolutions need their activation ranges
  fixed ahead of time (onnxruntime's dynamic ConvInteger path is slow and loses more
  accuracy), so a calibration reader feeds representative images (QDQ format, per-channel
  weights, MinMax ranges).

int8 is kept only when it costs at most ``max_loss`` (default one point) of accuracy
against labels, or of agreement with the fp32 model's decisions when there are no labels;
otherwise the fp32 model is kept and the reason is returned (and goes into the manifest).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

# the edge's own session: parity is checked on what the edge will run
from mfg_assets.edge.predictor import session

log = logging.getLogger("mfg.fleet.export")

DEFAULT_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"
Quantization = Literal["dynamic", "static"] | None


class ExportError(RuntimeError):
    """The ONNX graph does not reproduce the torch module (or could not be produced)."""


@dataclass(frozen=True)
class QuantCheck:
    """A labelled (or unlabelled) set to judge int8 against fp32.

    ``labels``: class indices for a classifier (argmax of the output), or booleans for a
    scorer (``score > threshold``). Without labels, agreement with fp32 decisions is used.
    """

    inputs: np.ndarray
    labels: np.ndarray | None = None
    threshold: float | None = None  # set for scorers (one output value per row)
    max_loss: float = 0.01  # one point


@dataclass
class ExportResult:
    path: Path
    precision: Literal["fp32", "int8"]
    reason: str
    fp32_path: Path
    max_abs_diff: float  # torch vs onnxruntime fp32
    metrics: dict[str, float] = field(default_factory=dict)

    def manifest_entry(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "reason": self.reason,
            "parity_max_abs_diff": self.max_abs_diff,
            "quantization_metrics": self.metrics,
        }


# -- fp32 export --------------------------------------------------------------------------------


def export_onnx(
    module: nn.Module,
    example: torch.Tensor | np.ndarray,
    path: Path,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write ``module`` as ONNX with a dynamic batch axis (input ``input``, output ``output``)."""
    if opset < 17:
        raise ValueError(f"opset {opset}: the edge runtime needs opset 17 or newer")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.as_tensor(example, dtype=torch.float32)
    module = module.eval()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs
        # onnxscript; the TorchScript one handles our small static graphs well.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (x,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,  # folds BatchNorm into the convolutions
        )
    onnx.checker.check_model(str(path))
    return path


def run(sess: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    return sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(x, np.float32)})[0]


def check_parity(
    module: nn.Module,
    path: Path,
    example: torch.Tensor | np.ndarray,
    rtol: float = 1e-3,
    atol: float = 1e-4,
) -> float:
    """Max |torch - onnxruntime| on ``example`` and on a batch of three; raise when off."""
    x = torch.as_tensor(example, dtype=torch.float32)
    batch = torch.cat([x[:1]] * 3) if x.shape[0] == 1 else x
    sess = session(path)
    worst = 0.0
    for inputs in (x, batch):
        with torch.no_grad():
            expected = module.eval()(inputs).numpy()
        got = run(sess, inputs.numpy())
        if got.shape != expected.shape:
            raise ExportError(f"ONNX output shape {got.shape} != torch {expected.shape}")
        finite = np.isfinite(expected)
        worst = max(worst, float(np.max(np.abs(got - expected)[finite], initial=0.0)))
        if not np.allclose(got, expected, rtol=rtol, atol=atol, equal_nan=True):
            raise ExportError(
                f"onnxruntime differs from torch by up to {worst:.3g} "
                f"(rtol={rtol}, atol={atol}) on input shape {tuple(inputs.shape)}"
            )
    return worst


# -- int8 ---------------------------------------------------------------------------------------


class _Calibration:
    """onnxruntime CalibrationDataReader over an array of inputs, in small batches."""

    def __init__(self, inputs: np.ndarray, batch: int = 16) -> None:
        self._batches: Iterator[np.ndarray] = iter(
            [np.ascontiguousarray(inputs[i : i + batch], np.float32)
             for i in range(0, len(inputs), batch)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}

    def rewind(self) -> None:  # pragma: no cover - not used by MinMax
        pass


def quantize(
    fp32_path: Path, out_path: Path, mode: Literal["dynamic", "static"],
    calibration: np.ndarray | None = None,
) -> Path:
    """Write an int8 model of ``fp32_path``; ``static`` needs calibration inputs."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        except Exception as exc:  # pre-processing only helps; quantize the raw graph instead
            log.info("quantization pre-processing skipped: %s", exc)
            shutil.copyfile(fp32_path, prepared)
        if mode == "dynamic":
            quantize_dynamic(str(prepared), str(out_path), weight_type=QuantType.QInt8)
        elif mode == "static":
            if calibration is None or len(calibration) == 0:
                raise ValueError("static quantization needs calibration inputs")
            quantize_static(
                str(prepared),
                str(out_path),
                _Calibration(calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                # 7-bit weights: u8 x s8 products saturate on x86 CPUs without VNNI (found
                # on an AVX2-only EPYC: -4.5 points), and the edge's CPU is not known here
                reduce_range=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        else:
            raise ValueError(f"unknown quantization {mode!r}: dynamic or static")
    return out_path


def decisions(outputs: np.ndarray, threshold: float | None) -> np.ndarray:
    """Class index (argmax) per row, or ``score > threshold`` for a scorer."""
    if threshold is not None:
        return outputs.reshape(len(outputs), -1)[:, 0] > threshold
    return outputs.reshape(len(outputs), -1).argmax(axis=1)


def compare_precisions(
    fp32_out: np.ndarray, int8_out: np.ndarray, check: QuantCheck
) -> dict[str, float]:
    """Agreement of decisions, accuracies against labels where given, and the loss."""
    a, b = decisions(fp32_out, check.threshold), decisions(int8_out, check.threshold)
    metrics = {"agreement": float((a == b).mean()), "n": float(len(a))}
    if check.labels is not None:
        labels = np.asarray(check.labels)
        metrics["accuracy_fp32"] = float((a == labels).mean())
        metrics["accuracy_int8"] = float((b == labels).mean())
        metrics["loss"] = metrics["accuracy_fp32"] - metrics["accuracy_int8"]
    else:
        metrics["loss"] = 1.0 - metrics["agreement"]
    return metrics


# -- all together -------------------------------------------------------------------------------


def export_model(
    module: nn.Module,
    example: torch.Tensor | np.ndarray,
    out_dir: Path,
    *,
    quantization: Quantization = None,
    calibration: np.ndarray | None = None,
    check: QuantCheck | None = None,
    opset: int = DEFAULT_OPSET,
    name: str = "model",
) -> ExportResult:
    """Export, verify parity, then try int8 if asked; keep int8 only within the loss budget.

    Writes ``{name}.fp32.onnx`` (and ``{name}.int8.onnx``) under ``out_dir``; the result
    names the file to ship.
    """
    out_dir = Path(out_dir)
    fp32_path = export_onnx(module, example, out_dir / f"{name}.fp32.onnx", opset)
    diff = check_parity(module, fp32_path, example)
    if quantization is None:
        return ExportResult(fp32_path, "fp32", "quantization not requested", fp32_path, diff)
    if check is None:
        return ExportResult(
            fp32_path, "fp32", "no evaluation set given to check int8; kept fp32", fp32_path, diff
        )
    int8_path = out_dir / f"{name}.int8.onnx"
    try:
        quantize(fp32_path, int8_path, quantization, calibration)
        fp32_out = run(session(fp32_path), check.inputs)
        int8_out = run(session(int8_path), check.inputs)
    except Exception as exc:
        reason = f"int8 ({quantization}) failed: {type(exc).__name__}: {exc}; kept fp32"
        log.warning(reason)
        return ExportResult(fp32_path, "fp32", reason, fp32_path, diff)
    metrics = compare_precisions(fp32_out, int8_out, check)
    basis = "accuracy against labels" if check.labels is not None else "agreement with fp32"
    if metrics["loss"] > check.max_loss:
        reason = (
            f"int8 ({quantization}) lost {100 * metrics['loss']:.2f} points of {basis} "
            f"(> {100 * check.max_loss:.2f}); kept fp32"
        )
        log.warning(reason)
        return ExportResult(fp32_path, "fp32", reason, fp32_path, diff, metrics)
    reason = (
        f"int8 ({quantization}) within budget: {100 * metrics['loss']:.2f} points of {basis} "
        f"lost (<= {100 * check.max_loss:.2f})"
    )
    return ExportResult(int8_path, "int8", reason, fp32_path, diff, metrics)

