"""Time grids and the plant's shared rhythms: shift load, breaks, ambient temperature.

Normal operation needs structure a model can learn (daily and shift cycles, breaks,
correlated sensors), so every machine's utilisation is derived from one plant schedule.
"""

from __future__ import annotations

import numpy as np

from mfg_assets.sim.config import SimConfig
from mfg_assets.sim.rng import rng_for

DAY_S = 86_400.0

# Shifts, working days, holidays and planned stops come from the plant calendar
# (mfg_assets/plant_calendar.py, SimConfig.calendar); the simulator adds what a calendar
# does not say. Breaks as (hours after shift start, minutes): two short ones and a meal.
BREAKS = ((2.0, 10.0), (4.0, 30.0), (6.0, 10.0))
CHANGEOVER_MIN = 15.0  # handover at each shift boundary runs at reduced pace
BREAK_LEVEL = 0.06
CHANGEOVER_LEVEL = 0.35


def time_grid(
    config: SimConfig, period_s: float, phase_ms: int, jitter_ms: int, rng: np.random.Generator
) -> np.ndarray:
    """Sample times (ms, int64) in [start, end): a fixed period, a phase and a little jitter.

    Jitter stays below a quarter period so times stay strictly increasing.
    """
    period_ms = round(period_s * 1000)
    n = max(0, (config.end_ms - config.start_ms - phase_ms + period_ms - 1) // period_ms)
    base = config.start_ms + phase_ms + np.arange(n, dtype=np.int64) * period_ms
    jitter = min(jitter_ms, period_ms // 4)
    if jitter > 0:
        base = base + rng.integers(0, jitter + 1, size=n)
    return base[base < config.end_ms]


def local_hours(config: SimConfig, ts_ms: np.ndarray) -> np.ndarray:
    """Hour of the plant's local day in [0, 24) for each timestamp (its calendar's zone)."""
    return config.calendar.local_hours(ts_ms)


def shift_level(config: SimConfig, ts_ms: np.ndarray) -> np.ndarray:
    """The planned production pace in [0, 1] at each timestamp: the calendar's pace
    (shift, weekend, holiday, planned stop) with breaks and shift handovers on top."""
    level = config.calendar.pace(ts_ms)
    hours = local_hours(config, ts_ms)
    for shift in config.calendar.shifts:
        since = (hours - shift.start_hour) % 24.0
        for offset_h, minutes in BREAKS:
            in_break = (since >= offset_h) & (since < offset_h + minutes / 60.0)
            level = np.where(in_break, np.minimum(level, BREAK_LEVEL), level)
        in_changeover = since < CHANGEOVER_MIN / 60.0
        level = np.where(in_changeover, np.minimum(level, CHANGEOVER_LEVEL), level)
    return level


def ema(x: np.ndarray, dt_s: float, tau_s: float, initial: float | None = None) -> np.ndarray:
    """First-order lag (thermal inertia, ramp smoothing) of a sampled signal."""
    alpha = 1.0 - np.exp(-dt_s / tau_s)
    out = np.empty(len(x), dtype=np.float64)
    start = initial if initial is not None else (x[0] if len(x) else 0.0)
    acc = float(start)
    for i, value in enumerate(x.tolist()):
        acc += alpha * (value - acc)
        out[i] = acc
    return out


def ar1(rng: np.random.Generator, n: int, dt_s: float, tau_s: float, sigma: float) -> np.ndarray:
    """Stationary AR(1) noise with std ``sigma`` and correlation time ``tau_s``."""
    phi = float(np.exp(-dt_s / tau_s))
    acc = float(rng.standard_normal()) * sigma  # drawn first: the shocks stay prefix-stable
    shocks = rng.standard_normal(n) * sigma * np.sqrt(1.0 - phi * phi)
    out = np.empty(n, dtype=np.float64)
    for i, shock in enumerate(shocks.tolist()):
        acc = phi * acc + shock
        out[i] = acc
    return out


def utilisation(
    config: SimConfig, ts_ms: np.ndarray, dt_s: float, machine_id: str, stop_rate_per_h: float = 0.4
) -> np.ndarray:
    """A machine's utilisation in [0, 1]: the plant schedule, smoothed, with its own
    pace variation and short unplanned stops (jams, material waits)."""
    planned = ema(shift_level(config, ts_ms), dt_s, tau_s=180.0)
    rng = rng_for(config.seed, "utilisation", machine_id)
    pace = 1.0 + ar1(rng, len(ts_ms), dt_s, tau_s=1800.0, sigma=0.05)
    u = planned * pace
    stops = rng_for(config.seed, "stops", machine_id)
    t = config.start_ms + stops.exponential(3_600_000 / stop_rate_per_h)
    while t < config.end_ms:
        length = stops.uniform(2.0, 12.0) * 60_000
        u = np.where((ts_ms >= t) & (ts_ms < t + length), BREAK_LEVEL * 0.5, u)
        t += length + stops.exponential(3_600_000 / stop_rate_per_h)
    return np.clip(ema(u, dt_s, tau_s=30.0), 0.0, 1.0)


def ambient_temp(config: SimConfig, ts_ms: np.ndarray, dt_s: float) -> np.ndarray:
    """Plant-floor air temperature (C): a daily swing peaking mid-afternoon plus weather."""
    hours = local_hours(config, ts_ms)
    rng = rng_for(config.seed, "ambient")
    # The weather stream is sampled on a fixed 60 s grid so every source sees the same air.
    minute_idx = ((ts_ms - config.start_ms) // 60_000).astype(np.int64)
    n_min = (config.end_ms - config.start_ms) // 60_000 + 1
    weather = ar1(rng, n_min, 60.0, tau_s=6 * 3600.0, sigma=1.2)
    return 21.0 + 3.0 * np.sin(2 * np.pi * (hours - 9.0) / 24.0) + weather[minute_idx]
