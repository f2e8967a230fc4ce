"""Sensor anomaly detection: an autoencoder per machine type over sensor-window features.

Input is ``features.sensor_windows``. Each machine type gets its own small autoencoder,
trained on normal windows only; a window whose reconstruction error exceeds a high
quantile of the errors on normal *validation* windows is an anomaly.

Why one model per machine type rather than one model with a machine-type one-hot: the
types have different sensors (welders: current, voltage, wire feed...; presses and CNCs:
vibration, spindle temperature, power), so a shared model would reconstruct columns that
are structurally missing for most rows, and one error threshold would have to fit several
error distributions at once. Per type, the features are all real, the threshold means one
thing, and each model stays small enough for the edge device of that line. Machines of one
type share a model (same physics, different recipes), so a new welder is covered at once.

Rows are split by :func:`mfg_assets.ml.base.block_split` on ``window_start``; the fault
label never enters training except to hold fault windows out of it.

Limits of the labels: ``is_fault`` marks every window from a fault's onset to its repair,
but a press/CNC degradation grows exponentially (about 2 % of its final severity a fifth
of the way to failure) and contact-tip wear linearly from zero, so the first part of each
fault is physically invisible; even a supervised classifier on these features reaches
F1 0.25-0.75 per machine type. So no constant floor: every evaluation also measures
simple baselines on the same test rows (:func:`baseline_metrics`), a per-machine z-score of
the features and a logistic regression on them where labels exist, thresholded the way the
model is, and the gate asks the model to beat them on F1 and AUROC.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from mfg_assets.ml import baselines, checkpoint, families, plots
from mfg_assets.ml.base import (
    POSITIVES,
    Trained,
    binary_metrics,
    block_split,
    read_info,
    sample_params,
    torch_session,
    write_info,
)
from mfg_assets.ml.features import feature_columns

_SPEC = families.spec('sensor_anomaly')  # metrics, floors, feature table: the registry
FAMILY = _SPEC.model
FEATURE_TABLE = _SPEC.feature_table
MODEL_FILE = "model.pt"

DEFAULT_PARAMS: dict[str, Any] = {
    "hidden": 32,
    "latent": 6,
    "epochs": 120,
    "batch_size": 64,
    "lr": 3e-3,
    "weight_decay": 1e-5,
    "quantile": 0.99,  # of normal validation errors -> threshold
    "block": "1h",  # split block length
    "min_column_fill": 0.95,  # a column a type fills less often than this is not its sensor
    "log": False,  # signed log of features before standardising
    "normalise_residuals": True,
    "reduce": "mean",  # over features: "mean" or "max" of squared normalised residuals
    "threads": 1,
}
_GRID: dict[str, list[Any]] = {
    "hidden": [16, 32, 64],
    "latent": [3, 4, 6, 8, 12],
    "epochs": [80, 120, 200],
    "lr": [1e-3, 3e-3, 1e-2],
    "weight_decay": [0.0, 1e-5, 1e-4],
    "quantile": [0.97, 0.98, 0.99, 0.995],
    "log": [False, True],
    "normalise_residuals": [True, False],
    "reduce": ["mean", "max"],
}


def search_space(budget: int, seed: int) -> list[dict[str, Any]]:
    return sample_params(np.random.default_rng(seed), _GRID, DEFAULT_PARAMS, budget)


# -- the network -------------------------------------------------------------------------------


class TypeAutoencoder(nn.Module):
    """Raw feature rows (NaN where missing) -> reconstruction error per row.

    Standardisation lives in buffers, so the module alone scores raw features (and can
    be exported as one graph for an edge runtime).
    """

    def __init__(
        self, n_in: int, hidden: int, latent: int, reduce: str = "mean", log: bool = False
    ) -> None:
        super().__init__()
        self.reduce = reduce
        self.log = log
        self.register_buffer("mean", torch.zeros(n_in))
        self.register_buffer("std", torch.ones(n_in))
        # Typical residual of each feature on normal training rows: a feature the model
        # reconstructs precisely (vibration given power) counts a small slip as much as a
        # noisy feature counts a large one.
        self.register_buffer("residual_scale", torch.ones(n_in))
        self.encoder = nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(), nn.Linear(hidden, n_in))

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Signed log: sensor magnitudes scale with load, so ratios (voltage per amp,
        vibration per kW) become differences, which the network reconstructs precisely."""
        return torch.sign(x) * torch.log1p(torch.abs(x)) if self.log else x

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        z = (self.transform(x) - self.mean) / self.std
        return torch.where(torch.isnan(z), torch.zeros_like(z), z)  # missing -> the mean

    def reconstruct(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(z))

    def residuals(self, x: torch.Tensor) -> torch.Tensor:
        z = self.standardise(x)
        return (self.reconstruct(z) - z) / self.residual_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squared = self.residuals(x) ** 2
        return squared.amax(dim=1) if self.reduce == "max" else squared.mean(dim=1)


class AnomalyModel(nn.Module):
    """One :class:`TypeAutoencoder` per machine type, with its columns and threshold."""

    def __init__(
        self,
        types: dict[str, dict[str, Any]],
        hidden: int,
        latent: int,
        reduce: str = "mean",
        log: bool = False,
    ) -> None:
        super().__init__()
        self.types = {name: dict(spec) for name, spec in types.items()}
        # ModuleDict keys must be identifiers; machine types come from the data.
        self.keys = {name: f"type_{i}" for i, name in enumerate(sorted(types))}
        self.nets = nn.ModuleDict(
            {
                self.keys[name]: TypeAutoencoder(len(spec["columns"]), hidden, latent, reduce, log)
                for name, spec in types.items()
            }
        )

    def net(self, machine_type: str) -> TypeAutoencoder:
        return self.nets[self.keys[machine_type]]  # type: ignore[return-value]

    def score(self, features: pl.DataFrame) -> np.ndarray:
        """Reconstruction error per row (NaN for a machine type the model does not know)."""
        scores = np.full(features.height, np.nan)
        machine_types = features.get_column("machine_type").to_numpy()
        with torch.no_grad():
            for name, spec in self.types.items():
                rows = np.flatnonzero(machine_types == name)
                if rows.size:
                    x = _matrix(features[rows], spec["columns"])
                    scores[rows] = self.net(name)(torch.from_numpy(x)).numpy()
        return scores

    def predict(self, features: pl.DataFrame) -> np.ndarray:
        """True where a window is anomalous."""
        thresholds = features.get_column("machine_type").replace_strict(
            {name: spec["threshold"] for name, spec in self.types.items()},
            default=math.inf,
            return_dtype=pl.Float64,
        )
        return self.score(features) > thresholds.to_numpy()


def _matrix(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    present = [pl.col(c) if c in frame.columns else pl.lit(None) for c in columns]
    x = frame.select(e.cast(pl.Float32).alias(c) for e, c in zip(present, columns, strict=True))
    return x.fill_null(float("nan")).to_numpy().astype(np.float32)


# -- training ----------------------------------------------------------------------------------


def with_split(features: pl.DataFrame, block: str) -> pl.DataFrame:
    return features.with_columns(block_split(pl.col("window_start"), block).alias("_split"))


def _normal(frame: pl.DataFrame) -> pl.Expr:
    # Unlabelled data (no ground truth at all) is trained on as it is: mostly normal.
    if frame.get_column("is_fault").null_count() == frame.height:
        return pl.lit(True)
    return pl.col("is_fault").not_()


def train(features: pl.DataFrame, params: dict[str, Any], seed: int = 0) -> Trained:
    p = {**DEFAULT_PARAMS, **params}
    data = with_split(features, p["block"])
    types: dict[str, dict[str, Any]] = {}
    nets: dict[str, TypeAutoencoder] = {}
    with torch_session(seed, p["threads"]):
        for machine_type in sorted(data.get_column("machine_type").unique().to_list()):
            rows = data.filter(pl.col("machine_type") == machine_type)
            fitted = _fit_type(rows, p)
            if fitted is not None:
                types[machine_type], nets[machine_type] = fitted
    if not types:
        raise ValueError("no machine type has normal training windows")
    model = AnomalyModel(types, p["hidden"], p["latent"], p["reduce"], p["log"])
    for name, net in nets.items():
        model.net(name).load_state_dict(net.state_dict())
    model.eval()

    validation = data.filter(pl.col("_split") == "validation")
    info = {
        "machine_types": types,
        "n_train": sum(spec["n_train"] for spec in types.values()),
        "thresholds": {name: spec["threshold"] for name, spec in types.items()},
        "split": {"method": "block", "block": p["block"], "on": "window_start"},
        "score": "mean squared reconstruction error of standardised window features",
        "feature_table": FEATURE_TABLE,
        "quantile": p["quantile"],  # of normal validation errors: the baselines' too
        "seed": seed,
    }
    return Trained(
        model=model,
        params=p,
        metrics=_metrics(model, validation),
        holdout_metrics=_holdout(model, data, info),
        figures={"reconstruction_error.png": _error_figure(model, data)},
        info=info,
    )


def _fit_type(
    rows: pl.DataFrame, p: dict[str, Any]
) -> tuple[dict[str, Any], TypeAutoencoder] | None:
    train_rows = rows.filter((pl.col("_split") == "train") & _normal(rows))
    val_rows = rows.filter((pl.col("_split") == "validation") & _normal(rows))
    if train_rows.height < 8 or val_rows.height < 2:
        return None  # too little normal data to learn or to set a threshold
    # A type's own sensors: the columns it (nearly) always fills.
    fill = train_rows.select(pl.col(feature_columns(rows)).is_not_null().mean())
    columns = [c for c in fill.columns if fill.get_column(c).item() >= p["min_column_fill"]]
    x_train = _matrix(train_rows, columns)
    net = TypeAutoencoder(len(columns), p["hidden"], p["latent"], p["reduce"], p["log"])
    with torch.no_grad():
        transformed = net.transform(torch.from_numpy(x_train)).numpy()
    mean = np.nanmean(transformed, axis=0)
    std = np.nanstd(transformed, axis=0)
    net.mean.copy_(torch.from_numpy(mean))
    net.std.copy_(torch.from_numpy(np.where(std > 1e-6, std, 1.0).astype(np.float32)))
    _fit(net, torch.from_numpy(x_train), p, unit=str(rows.get_column("machine_type")[0]))
    net.eval()
    if p["normalise_residuals"]:
        with torch.no_grad():
            rms = net.residuals(torch.from_numpy(x_train)).pow(2).mean(dim=0).sqrt()
        net.residual_scale.copy_(torch.clamp(rms, min=1e-3))
    with torch.no_grad():
        val_errors = net(torch.from_numpy(_matrix(val_rows, columns))).numpy()
    spec = {
        "columns": columns,
        "threshold": float(np.quantile(val_errors, p["quantile"])),
        "n_train": train_rows.height,
        "n_validation_normal": val_rows.height,
    }
    return spec, net


def _fit(net: TypeAutoencoder, x: torch.Tensor, p: dict[str, Any], unit: str = "") -> None:
    """Train ``net``; inside a checkpoint scope (a Dagster run) each epoch is checkpointed
    and a retry of the same run resumes where the last one stopped (ml/checkpoint.py)."""
    z = net.standardise(x)
    optimiser = torch.optim.Adam(net.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    seed = int(torch.initial_seed()) % (2**31)
    generator = torch.Generator().manual_seed(seed)
    net.train()
    what = {"family": FAMILY.name, "unit": unit, "params": p, "seed": seed, "rows": len(z)}
    with checkpoint.resumable(what, p["epochs"]) as ckpt:
        for epoch in range(ckpt.restore(net, optimiser, [generator]), p["epochs"]):
            order = torch.randperm(len(z), generator=generator)
            for start in range(0, len(z), p["batch_size"]):
                batch = z[order[start : start + p["batch_size"]]]
                loss = ((net.reconstruct(batch) - batch) ** 2).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            ckpt.epoch_done(epoch + 1, net, optimiser, [generator])


# -- evaluation --------------------------------------------------------------------------------


def _metrics(model: AnomalyModel, rows: pl.DataFrame) -> dict[str, float]:
    rows = rows.filter(
        pl.col("is_fault").is_not_null() & pl.col("machine_type").is_in(list(model.types))
    )
    if rows.height == 0:
        return {"precision": math.nan, "recall": math.nan, "f1": math.nan, "auroc": math.nan,
                "false_alarm_rate": math.nan, POSITIVES: 0.0}
    truth = rows.get_column("is_fault").to_numpy().astype(bool)
    predicted = model.predict(rows)
    metrics = binary_metrics(truth, predicted, model.score(rows))
    # share of normal windows flagged: defined without faults in the rows (FAMILY.quiet_metric)
    normal = ~truth
    metrics["false_alarm_rate"] = (float(np.asarray(predicted, dtype=bool)[normal].mean())
                                   if normal.any() else math.nan)
    metrics[POSITIVES] = float(truth.sum())  # how much the other figures can be trusted
    return metrics


def evaluate(model: AnomalyModel, features: pl.DataFrame, info: dict[str, Any]) -> dict[str, float]:
    """precision/recall/f1/auroc of fault windows, the false alarm rate on normal ones and
    the number of fault windows, in the test blocks of ``features``; the same for the
    baselines fit on its train blocks (``baseline.<name>.<metric>``)."""
    return _holdout(model, with_split(features, info["split"]["block"]), info)


def _holdout(model: AnomalyModel, data: pl.DataFrame, info: dict[str, Any]) -> dict[str, float]:
    metrics = _metrics(model, data.filter(pl.col("_split") == "test"))
    metrics.update(baseline_metrics(model, data, info.get("quantile", DEFAULT_PARAMS["quantile"]),
                                    info.get("seed", 0)))
    return metrics


# Fewer normal training windows of one machine than this: its z-score baseline uses its
# machine type's normal windows (a new machine has no history of its own yet).
_MIN_MACHINE_ROWS = 8


def baseline_metrics(model: AnomalyModel, data: pl.DataFrame, quantile: float,
                     seed: int = 0) -> dict[str, float]:
    """``baseline.<name>.<metric>`` on the labelled test rows of ``data`` (split into
    ``_split`` parts) that the model scores, each baseline fit on the train rows of each
    machine type over the model's columns for that type:

    - ``zscore``: distance of a window from its machine's mean normal training window, in
      that machine's standard deviations (no learning beyond a mean per sensor);
    - ``logistic``: a class-weighted logistic regression on the standardized features, fit
      on labelled training windows (a constant, i.e. never alarming, for a type without
      faults among them: the majority class).

    Both are thresholded as the model is: at ``quantile`` of their scores on the normal
    validation windows of the type, so all three alarm about as often on normal operation
    and F1 compares what each finds at that false alarm rate.
    """
    labelled = pl.col("is_fault").is_not_null()
    scored = {"zscore": [], "logistic": []}
    truths = []
    for name, spec in model.types.items():
        rows = data.filter(pl.col("machine_type") == name)
        test = rows.filter((pl.col("_split") == "test") & labelled)
        if test.height == 0:
            continue
        columns = spec["columns"]
        train_rows = rows.filter((pl.col("_split") == "train") & labelled)
        validation = rows.filter((pl.col("_split") == "validation") & _normal(rows))
        normal_train = train_rows.filter(_normal(train_rows))
        x_val, x_test = _matrix(validation, columns), _matrix(test, columns)
        # z-score per machine (its own normal level), the type's for a machine without it
        z_val, z_test = _machine_zscores(normal_train, columns, [validation, test],
                                         [x_val, x_test])
        fitted = baselines.logistic_scores(
            _matrix(train_rows, columns), train_rows.get_column("is_fault").to_numpy(),
            [x_val, x_test], seed)
        l_val, l_test = fitted if fitted is not None else (np.zeros(len(x_val)),
                                                           np.zeros(len(x_test)))
        for key, val, tst in (("zscore", z_val, z_test), ("logistic", l_val, l_test)):
            threshold = float(np.quantile(val, quantile)) if len(val) else math.inf
            scored[key].append((tst, tst > threshold))
        truths.append(test.get_column("is_fault").to_numpy().astype(bool))
    if not truths:
        return {}
    truth = np.concatenate(truths)
    out: dict[str, float] = {}
    for key, parts in scored.items():
        score = np.concatenate([s for s, _ in parts])
        flag = np.concatenate([f for _, f in parts])
        out.update(baselines.binary(key, truth, flag, score))
    return out


def _machine_zscores(normal_train: pl.DataFrame, columns: list[str],
                     frames: list[pl.DataFrame], matrices: list[np.ndarray]) -> list[np.ndarray]:
    """z-score baseline of each row of ``frames`` (with their ``matrices``) against its
    machine's normal training windows."""
    pooled = _matrix(normal_train, columns)
    own = {str(m): _matrix(g, columns) for (m,), g in normal_train.group_by("machine_id")}
    out = []
    for frame, x in zip(frames, matrices, strict=True):
        score = np.zeros(len(x))
        machines = frame.get_column("machine_id").cast(pl.String).to_numpy()
        for machine in np.unique(machines):
            mine = machines == machine
            reference = own.get(str(machine))
            if reference is None or len(reference) < _MIN_MACHINE_ROWS:
                reference = pooled
            score[mine] = baselines.zscore_scores(reference, x[mine])
        out.append(score)
    return out


def _error_figure(model: AnomalyModel, data: pl.DataFrame) -> bytes:
    held = data.filter(pl.col("_split") != "train")
    scores = model.score(held)
    fault = held.get_column("is_fault").fill_null(False).to_numpy()
    types = held.get_column("machine_type").to_numpy()
    panels = {}
    for name, spec in model.types.items():
        mine = types == name
        panels[name] = (scores[mine & ~fault], scores[mine & fault], spec["threshold"])
    return plots.error_histograms(panels, "Reconstruction error, validation + test windows")


# -- persistence -------------------------------------------------------------------------------


def save(trained: Trained, path: Path) -> None:
    path = Path(path)
    write_info(path, trained.info, trained.params)
    torch.save(trained.model.state_dict(), path / MODEL_FILE)


def load(path: Path) -> tuple[AnomalyModel, dict[str, Any]]:
    path = Path(path)
    info, params = read_info(path)
    model = AnomalyModel(
        info["machine_types"], params["hidden"], params["latent"], params["reduce"], params["log"]
    )
    model.load_state_dict(torch.load(path / MODEL_FILE, weights_only=True))
    model.eval()
    return model, info
