"""What the loop simulates: the plant, the history before the onset and the live day.

Scenario: ``sensor_replacement`` on the second welder, watched by the sensor-anomaly
autoencoder. Why this one: the autoencoder trains in seconds (the whole loop has to fit
in minutes on two cores) and its bundle runs on line edges fed by the welders' JSON
readings; and the replaced sensor really hurts the served model (it alarms on most of
the welder's normal windows) while a retrained one does not, so the gate has something
to decide and quality before/after means something. The other scenarios are built to be
invisible to the models (sensor_recalibration: a few sigmas; camera_lighting: the CNN
standardises each image; material_lot: the yield model has no edge bundle to roll out).

Control (``scenario=None``): the same plant and live day without any drift; nothing may
be declared drifted and nothing retrained (the false alarms of the drift decision).

Time: the live day is today (UTC) from midnight, because silver follows the latest
wall-clock day; the history is the hours before it (``history_hours``: at least
``history_h``, longer where the live day has a kind of time the history lacks). The live
stream starts
with a backlog of ``backlog_h`` simulated hours published at once (enough post-drift
windows to detect the drift and learn the new normal), then runs at ``speed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl

from mfg_assets.plant_calendar import DAY_TYPE, SHIFT, PlantCalendar
from mfg_assets.sim import PlantLayout, SimConfig
from mfg_assets.sim.config import Edge

SCENARIO = "sensor_replacement"
FAMILY = "sensor_anomaly"
# Sensor readings feed the anomaly loop; process units keep every feature table buildable.
# No cameras: image traffic would only slow the loop down.
SOURCES = ("welding", "press", "process")
# Live, only what the anomaly models read: the history already built the process tables,
# and live process units would keep three more silver/feature runs per minute competing
# for the two cores with the loop's own runs (measured: a third of the runs after the onset).
LIVE_SOURCES = ("welding", "press")
# Two line edges on the welding line: one is the canary, the other the control group.
EDGES = (
    Edge("edge-weld1", "body", "weld1", "cell01", "2.3.1", "line"),
    Edge("edge-weld2", "body", "weld1", "cell02", "2.3.1", "line"),
)


@dataclass(frozen=True)
class LoopConfig:
    seed: int = 11
    # None: the control run, a live day without drift (watched for ``control_watch_s``)
    scenario: str | None = SCENARIO
    # At least this much history, and longer where needed (``history_hours``). 72 h, not
    # 48: drift compares like for like on the plant calendar, and a Monday's 48 h history
    # is a weekend (no workday reference at all); the day-to-day spread needs 3 days.
    history_h: float = 72.0
    # Simulated hours published at once at the onset: by the first retrain the gate's 12 h
    # window is (nearly) all post-drift, where the retrained model is judged on its new normal
    # rather than on a few faults before the onset (with 6 h the first retrain was refused).
    backlog_h: float = 10.0
    speed: float = 60.0  # then simulated s per wall-clock s: the rest of the day lasts 14 min
    fault_rate_per_day: float = 1.0
    # onset -> promoted, or give up (the control: the most it watches)
    timeout_s: float = 900.0
    # Control: how long the loop watches after the onset at least (several drift
    # evaluations, one per feature rebuild: every 30-60 s on two idle cores), and how many
    # evaluations of live data it waits for at least (on a loaded host the first one came
    # after 5 minutes): 2 consecutive drifted ones declare a segment.
    control_watch_s: float = 360.0
    control_evaluations: int = 3
    # Every loop sensor (production: 15-300 s). The daemon wakes every 5 s; a 5 s interval
    # missed every other wake-up by milliseconds, so the sensors ticked every 10 s.
    sensor_interval_s: int = 4
    rollout_cron: str = "* * * * *"  # canary re-evaluation (production: every 10 min)
    retrain_budget: int = 1  # hyper-parameter trials of the drift retrain
    # The canary's evidence per group before a decision (production: 50 predictions, 30 of
    # them labelled). The live line makes ~18 predictions per edge and minute; labels come
    # with the next feature rebuild.
    rollout_min_predictions: int = 20
    rollout_min_labelled: int = 10
    broker_url: str | None = None  # None: a private mosquitto

    def __post_init__(self) -> None:
        if self.history_h < 24:
            raise ValueError(f"history_h={self.history_h}: the champion needs at least 24 h")
        if self.scenario not in (None, SCENARIO):
            # the loop's family, target and quality figures are built for this scenario
            raise ValueError(f"scenario={self.scenario!r}: the loop runs {SCENARIO!r} or "
                             "None (the control run)")
        if self.control_watch_s <= 0 or self.control_evaluations < 1:
            raise ValueError(f"control_watch_s={self.control_watch_s}, control_evaluations="
                             f"{self.control_evaluations}: must be positive")
        if not 0 < self.backlog_h < 20:
            raise ValueError(f"backlog_h={self.backlog_h}: between 0 and 20 simulated hours")
        if self.speed <= 0:
            raise ValueError(f"speed={self.speed}: must be positive")

    def env(self) -> dict[str, str]:
        """The daemon's cadence overrides (production defaults stay as they are)."""
        return {
            "MFG_SENSOR_INTERVAL_S": str(self.sensor_interval_s),
            "MFG_ROLLOUT_CRON": self.rollout_cron,
            "MFG_DRIFT_RETRAIN_BUDGET": str(self.retrain_budget),
            "MFG_ROLLOUT_MIN_PREDICTIONS": str(self.rollout_min_predictions),
            "MFG_ROLLOUT_MIN_LABELLED": str(self.rollout_min_labelled),
            "MFG_RUN_EXECUTOR": "in_process",
        }


def layout() -> PlantLayout:
    return PlantLayout(edges=EDGES)


def live_day(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def kinds_of_time(start: datetime, hours: float, calendar: PlantCalendar) -> set[tuple]:
    """(day type, shift) of each 10 minutes in [start, start + hours)."""
    ts = pl.datetime_range(start, start + timedelta(hours=hours), "10m", closed="left",
                           eager=True, time_zone="UTC").alias("ts")
    frame = calendar.annotate(pl.DataFrame(ts), "ts")
    return set(frame.select(DAY_TYPE, SHIFT).unique().iter_rows())


def history_hours(config: LoopConfig, day: datetime,
                  calendar: PlantCalendar | None = None) -> float:
    """Hours of history before the live ``day``: ``history_h``, extended a day at a time
    (up to a week) until the history holds every (day type, shift) the live day has.

    Why: the drift report compares the recent window with reference rows of the same day
    type and shift; without them it falls back to coarser levels (a UTC Saturday's live day
    is mostly a weekend on the plant's clock, and the 72 h before it hold workdays only)."""
    calendar = calendar or SimConfig().calendar
    live = kinds_of_time(day, 24.0, calendar)
    hours = config.history_h
    while hours < 168 and not live <= kinds_of_time(day - timedelta(hours=hours), hours,
                                                     calendar):
        hours += 24.0
    return hours


def history_config(config: LoopConfig, day: datetime) -> SimConfig:
    hours = history_hours(config, day)
    return SimConfig(
        seed=config.seed, start=day - timedelta(hours=hours),
        duration_h=hours, sources=SOURCES, plant=layout(),
        fault_rate_per_day=config.fault_rate_per_day,
    )


def live_config(config: LoopConfig, day: datetime) -> SimConfig:
    """The live day, drifted from its first message (the onset; the control run: never).
    A different seed: the same one would replay the history's noise."""
    drift = () if config.scenario is None else ((config.scenario, 0.0),)
    return SimConfig(
        seed=config.seed + 1, start=day, duration_h=23.9, sources=LIVE_SOURCES, plant=layout(),
        fault_rate_per_day=config.fault_rate_per_day, drift=drift,
    )
