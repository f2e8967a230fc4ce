"""Rolling sensor windows on the edge, featurized exactly as the training side does.

The training features (``mfg_assets.ml.features.sensor_windows``) are per machine and
clock-aligned window ``[start, start + every)``: per sensor mean, std, min, max, slope
(units per hour), RMS of successive differences, and the low/mid/high shares of AC power
and the dominant frequency (fraction of Nyquist). The edge cannot import training code
(polars group-bys over a day of data are the wrong tool for one window at a time), so the
same definitions are written here in numpy for one window; a test holds the two equal.

What the edge needs to know comes from the bundle's preprocessing JSON (``window``):
``every_s``, the model's ``columns`` (``<sensor>__<stat>``, in model order), the
``machine_type`` it scores and ``min_samples`` per sensor (the training side drops windows
below half the usual sample count; so does the edge).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SEP = "__"
BASIC_STATS = ("mean", "std", "min", "max", "slope", "rms_diff")
SPECTRAL_STATS = ("fft_low", "fft_mid", "fft_high", "fft_peak")
STATS = BASIC_STATS + SPECTRAL_STATS


@dataclass(frozen=True)
class WindowSpec:
    machine_type: str
    every_s: float
    columns: tuple[str, ...]  # model input order
    min_samples: int = 1  # per sensor, below it the window is not scored

    @property
    def every_ms(self) -> int:
        return round(self.every_s * 1000)

    @property
    def sensors(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.split(SEP)[0] for c in self.columns))

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> WindowSpec:
        return cls(
            machine_type=doc["machine_type"],
            every_s=float(doc["every_s"]),
            columns=tuple(doc["columns"]),
            min_samples=int(doc.get("min_samples", 1)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine_type": self.machine_type,
            "every_s": self.every_s,
            "columns": list(self.columns),
            "min_samples": self.min_samples,
        }


def spectral_shares(values: np.ndarray) -> np.ndarray:
    """(low, mid, high share of AC power, dominant frequency / Nyquist) of one window."""
    centred = values - values.mean()
    power = np.abs(np.fft.rfft(centred))[1:] ** 2  # drop DC
    freq = np.arange(1, power.size + 1) / (values.size / 2.0)
    total = power.sum()
    if total <= 0:
        return np.zeros(4)
    bands = (freq <= 1 / 3, (freq > 1 / 3) & (freq <= 2 / 3), freq > 2 / 3)
    shares = [power[band].sum() / total for band in bands]
    return np.array([*shares, freq[int(np.argmax(power))]])


def sensor_stats(ts_ms: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """The statistics of one sensor in one window (samples in any order)."""
    order = np.argsort(ts_ms, kind="stable")
    ts, v = ts_ms[order].astype(np.float64), values[order].astype(np.float64)
    n = v.size
    t = (ts - ts[0]) / 1000.0
    t_c = t - t.mean()
    denominator = float((t_c * t_c).sum())
    nan = math.nan
    out = {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if n > 1 else nan,
        "min": float(v.min()),
        "max": float(v.max()),
        "slope": float((t_c * (v - v.mean())).sum() / denominator * 3600.0)
        if denominator > 0
        else nan,
        "rms_diff": float(np.sqrt(np.mean(np.diff(v) ** 2))) if n > 1 else nan,
    }
    spectrum = spectral_shares(v) if n >= 4 else np.full(4, nan)
    out.update(zip(SPECTRAL_STATS, spectrum.tolist(), strict=True))
    return out


@dataclass
class _Open:
    start_ms: int
    machine_type: str
    samples: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)


@dataclass(frozen=True)
class CompletedWindow:
    machine_id: str
    machine_type: str
    start_ms: int
    n_samples: int  # the smallest sample count over the spec's sensors
    vector: np.ndarray  # float32, spec.columns order, NaN where missing
    scored: bool  # enough samples of every sensor

    @property
    def source_id(self) -> str:
        return f"{self.machine_id}/{self.start_ms}"


class RollingWindows:
    """Per machine, the open window; a reading of a later window completes it.

    Readings older than a machine's open window arrive too late to change a scored window:
    they are counted in ``late`` and otherwise ignored.
    """

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self._open: dict[str, _Open] = {}
        self.late = 0

    def add(
        self, machine_id: str, machine_type: str, ts_ms: int, readings: Mapping[str, float]
    ) -> CompletedWindow | None:
        if machine_type != self.spec.machine_type:
            return None
        start = ts_ms - ts_ms % self.spec.every_ms
        current = self._open.get(machine_id)
        done = None
        if current is not None and start < current.start_ms:
            self.late += 1
            return None
        if current is None or start > current.start_ms:
            if current is not None:
                done = self.featurize(machine_id, current)
            current = self._open[machine_id] = _Open(start, machine_type)
        for sensor, value in readings.items():
            times, values = current.samples.setdefault(sensor, ([], []))
            times.append(ts_ms)
            values.append(float(value))
        return done

    def featurize(self, machine_id: str, window: _Open) -> CompletedWindow:
        stats: dict[str, float] = {}
        counts = []
        for sensor in self.spec.sensors:
            times, values = window.samples.get(sensor, ([], []))
            counts.append(len(values))
            if values:
                for name, value in sensor_stats(np.array(times), np.array(values)).items():
                    stats[f"{sensor}{SEP}{name}"] = value
        vector = np.array([stats.get(c, math.nan) for c in self.spec.columns], dtype=np.float32)
        n = min(counts) if counts else 0
        return CompletedWindow(
            machine_id, window.machine_type, window.start_ms, n, vector,
            scored=n >= self.spec.min_samples,
        )


def columns_of(sensors: Sequence[str], stats: Sequence[str] = STATS) -> list[str]:
    return [f"{sensor}{SEP}{stat}" for sensor in sensors for stat in stats]
