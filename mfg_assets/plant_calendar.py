"""The plant's calendar: shifts, working days, holidays and planned stops.

A plant does not run the same way every hour: a Monday early shift is not a Sunday night,
a holiday is quiet and a planned maintenance stop is silent. Whatever compares one stretch
of time with another (drift, alarm rates, the simulator's pace) asks this calendar what
kind of time a timestamp is, in the plant's own time zone, so like is compared with like.

The default is the simulated plant (three 8 h shifts from 06:00, Monday to Friday, reduced
weekend pace, fixed UTC-5 clock); a plant describes its own in a YAML file named by
``MFG_PLANT_CALENDAR`` (read in ``settings.py``), e.g.::

    timezone: Europe/Berlin
    shifts:
      - {name: early, start_hour: 6, hours: 8}
      - {name: late, start_hour: 14, hours: 8}
    working_days: [0, 1, 2, 3, 4]          # Monday = 0
    weekend_pace: 0.0                       # closed on non-working days
    holidays: [2026-12-24, 2026-12-25]
    planned_stops:
      - {start: "2026-12-09T06:00:00+01:00", end: "2026-12-09T14:00:00+01:00",
         reason: press line maintenance}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import yaml

WORKDAY, WEEKEND, HOLIDAY = "workday", "weekend", "holiday"
NO_SHIFT = "off"
# Columns ``annotate`` adds (prefixed so they never collide with a feature column).
DAY_TYPE, SHIFT, PLANNED_STOP, LOCAL_HOUR = "cal_day_type", "cal_shift", "cal_planned_stop", \
    "cal_local_hour"


class CalendarError(ValueError):
    """A calendar file that does not describe a calendar."""


@dataclass(frozen=True)
class Shift:
    name: str
    start_hour: float  # local clock
    hours: float = 8.0
    pace: float = 1.0  # planned production pace relative to a full shift

    def __post_init__(self) -> None:
        if not 0 <= self.start_hour < 24 or not 0 < self.hours <= 24:
            raise CalendarError(f"shift {self.name!r}: start_hour in [0, 24), hours in (0, 24]")
        if not 0 <= self.pace <= 1:
            raise CalendarError(f"shift {self.name!r}: pace must be within 0..1")


@dataclass(frozen=True)
class PlannedStop:
    start: datetime
    end: datetime
    reason: str = "planned stop"

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise CalendarError(f"planned stop {self.reason!r}: give start and end a time zone")
        if self.end <= self.start:
            raise CalendarError(f"planned stop {self.reason!r} ends before it starts")


DEFAULT_SHIFTS = (Shift("early", 6.0, 8.0, 1.0), Shift("late", 14.0, 8.0, 0.92),
                  Shift("night", 22.0, 8.0, 0.62))


@dataclass(frozen=True)
class PlantCalendar:
    # An IANA zone; the default is the simulator's plant clock, UTC-5 without DST (POSIX
    # names invert the sign). A real plant names its zone, e.g. America/Detroit.
    timezone: str = "Etc/GMT+5"
    shifts: tuple[Shift, ...] = DEFAULT_SHIFTS
    working_days: frozenset[int] = frozenset(range(5))
    weekend_pace: float = 0.75  # pace on non-working days (0: the plant is closed)
    holiday_pace: float = 0.0
    holidays: frozenset[date] = frozenset()
    planned_stops: tuple[PlannedStop, ...] = ()
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "_zone", ZoneInfo(self.timezone))
        except Exception as exc:  # ZoneInfoNotFoundError, ValueError on odd names
            raise CalendarError(f"unknown time zone {self.timezone!r}") from exc
        if not set(self.working_days) <= set(range(7)):
            raise CalendarError("working_days are weekday numbers 0 (Monday) .. 6")
        names = [s.name for s in self.shifts]
        if len(set(names)) != len(names) or NO_SHIFT in names:
            raise CalendarError(f"shift names must be distinct and not {NO_SHIFT!r}")

    # -- one timestamp ------------------------------------------------------------------

    def local(self, when: datetime) -> datetime:
        if when.tzinfo is None:
            raise ValueError("a naive datetime is ambiguous: give it a time zone (UTC)")
        return when.astimezone(self._zone)

    def day_type(self, day: date) -> str:
        if day in self.holidays:
            return HOLIDAY
        return WORKDAY if day.weekday() in self.working_days else WEEKEND

    def shift_at(self, when: datetime) -> str:
        """The shift running at ``when`` (the later one where two overlap), or ``off``."""
        local = self.local(when)
        hour = local.hour + local.minute / 60 + local.second / 3600
        found = NO_SHIFT
        for shift in self.shifts:
            if (hour - shift.start_hour) % 24 < shift.hours:
                found = shift.name
        return found

    def in_planned_stop(self, when: datetime) -> bool:
        return any(stop.start <= when < stop.end for stop in self.planned_stops)

    # -- many timestamps ----------------------------------------------------------------

    def annotate(self, frame: pl.DataFrame, ts: str) -> pl.DataFrame:
        """``frame`` with the calendar columns for its timestamp column ``ts``.

        ``cal_day_type`` (workday/weekend/holiday), ``cal_shift`` (a shift name or ``off``),
        ``cal_planned_stop`` (bool) and ``cal_local_hour`` (0-23), on the plant's clock.
        A night shift that starts on a Friday belongs to Friday's day type until midnight.
        """
        utc = as_utc(frame[ts])
        local = utc.dt.convert_time_zone(self.timezone)
        hour = (local.dt.hour().cast(pl.Float64) + local.dt.minute().cast(pl.Float64) / 60.0
                + local.dt.second().cast(pl.Float64) / 3600.0).to_numpy()
        days = local.dt.date()
        weekday = local.dt.weekday().to_numpy() - 1  # polars: Monday = 1
        day_type = np.where(np.isin(weekday, sorted(self.working_days)), WORKDAY, WEEKEND)
        if self.holidays:
            holiday = days.is_in(sorted(self.holidays)).fill_null(False).to_numpy()
            day_type = np.where(holiday, HOLIDAY, day_type)
        shift = np.full(len(frame), NO_SHIFT, dtype=object)
        for item in self.shifts:
            shift = np.where((hour - item.start_hour) % 24 < item.hours, item.name, shift)
        stopped = np.zeros(len(frame), dtype=bool)
        epoch_us = utc.dt.epoch("us").to_numpy()
        for stop in self.planned_stops:
            lo, hi = (int(stop.start.timestamp() * 1e6), int(stop.end.timestamp() * 1e6))
            stopped |= (epoch_us >= lo) & (epoch_us < hi)
        missing = utc.is_null().to_numpy()
        return frame.with_columns(
            pl.Series(DAY_TYPE, np.where(missing, None, day_type), dtype=pl.Utf8),
            pl.Series(SHIFT, np.where(missing, None, shift), dtype=pl.Utf8),
            pl.Series(PLANNED_STOP, stopped & ~missing, dtype=pl.Boolean),
            pl.Series(LOCAL_HOUR, np.floor(np.nan_to_num(hour, nan=-1)), dtype=pl.Float64)
            .cast(pl.Int8).replace(-1, None),
        )

    def local_hours(self, ts_ms: np.ndarray) -> np.ndarray:
        """Hour of the local day in [0, 24) for each UTC timestamp (ms)."""
        utc = as_utc(pl.Series("ts", np.asarray(ts_ms, dtype=np.int64)))
        local = utc.dt.convert_time_zone(self.timezone)
        return (local.dt.hour().cast(pl.Float64) + local.dt.minute().cast(pl.Float64) / 60.0
                + (local.dt.second().cast(pl.Float64)
                   + local.dt.millisecond().cast(pl.Float64) / 1000.0) / 3600.0).to_numpy()

    def pace(self, ts_ms: np.ndarray) -> np.ndarray:
        """Planned production pace in [0, 1] at each UTC timestamp (ms): the shift's pace,
        scaled on weekends and holidays, zero in a planned stop and outside every shift."""
        frame = self.annotate(pl.DataFrame({"ts": np.asarray(ts_ms, dtype=np.int64)}), "ts")
        by_shift = {s.name: s.pace for s in self.shifts}
        level = np.array([by_shift.get(name, 0.0) for name in frame[SHIFT].to_list()])
        day = frame[DAY_TYPE].to_numpy()
        level = np.where(day == WEEKEND, level * self.weekend_pace, level)
        level = np.where(day == HOLIDAY, level * self.holiday_pace, level)
        return np.where(frame[PLANNED_STOP].to_numpy(), 0.0, level)

    def running_days(self, first: date, last: date) -> list[date]:
        """Days in [first, last] the plant produces on (pace above zero somewhere)."""
        days = pl.date_range(first, last, eager=True).to_list()
        out = []
        for day in days:
            kind = self.day_type(day)
            if kind == WORKDAY or (kind == WEEKEND and self.weekend_pace > 0) or (
                    kind == HOLIDAY and self.holiday_pace > 0):
                out.append(day)
        return out

    # -- files ----------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PlantCalendar:
        if not isinstance(raw, dict):
            raise CalendarError("a calendar is a mapping (timezone, shifts, working_days, ...)")
        known = {"timezone", "shifts", "working_days", "weekend_pace", "holiday_pace",
                 "holidays", "planned_stops"}
        unknown = set(raw) - known
        if unknown:
            raise CalendarError(f"unknown calendar keys {sorted(unknown)}; known: {sorted(known)}")
        args: dict[str, Any] = {}
        try:
            if "timezone" in raw:
                args["timezone"] = str(raw["timezone"])
            if "shifts" in raw:
                args["shifts"] = tuple(Shift(**item) for item in raw["shifts"])
            if "working_days" in raw:
                args["working_days"] = frozenset(int(d) for d in raw["working_days"])
            for key in ("weekend_pace", "holiday_pace"):
                if key in raw:
                    args[key] = float(raw[key])
            if "holidays" in raw:
                args["holidays"] = frozenset(_as_date(d) for d in raw["holidays"])
            if "planned_stops" in raw:
                args["planned_stops"] = tuple(
                    PlannedStop(_as_datetime(s["start"]), _as_datetime(s["end"]),
                                str(s.get("reason", "planned stop")))
                    for s in raw["planned_stops"])
        except (TypeError, KeyError, ValueError) as exc:
            if isinstance(exc, CalendarError):
                raise
            raise CalendarError(f"calendar: {exc}") from exc
        return cls(**args)

    @classmethod
    def from_file(cls, path: Path) -> PlantCalendar:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise CalendarError(f"cannot read plant calendar {path}: {exc}") from exc
        return cls.from_dict(raw or {})

    def to_dict(self) -> dict[str, Any]:
        return {
            "timezone": self.timezone,
            "shifts": [vars(s) for s in self.shifts],
            "working_days": sorted(self.working_days),
            "weekend_pace": self.weekend_pace,
            "holiday_pace": self.holiday_pace,
            "holidays": [d.isoformat() for d in sorted(self.holidays)],
            "planned_stops": [{"start": s.start.isoformat(), "end": s.end.isoformat(),
                               "reason": s.reason} for s in self.planned_stops],
        }


def load_calendar(path: Path | None = None) -> PlantCalendar:
    """The plant's calendar: the file named in the settings, else the default."""
    if path is None:
        from mfg_assets.settings import get_settings

        path = get_settings().plant_calendar_path
    return PlantCalendar.from_file(path) if path else PlantCalendar()


def as_utc(column: pl.Series) -> pl.Series:
    """A UTC datetime series from epoch-ms integers or (naive = UTC, or aware) datetimes."""
    if column.dtype.is_integer():
        return pl.from_epoch(column, time_unit="ms").dt.replace_time_zone("UTC")
    if isinstance(column.dtype, pl.Datetime):
        if column.dtype.time_zone is None:
            return column.dt.replace_time_zone("UTC")
        return column.dt.convert_time_zone("UTC")
    raise TypeError(f"column {column.name!r} is {column.dtype}, not a timestamp")


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _as_datetime(value: Any) -> datetime:
    out = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if out.tzinfo is None:
        raise CalendarError(f"{out.isoformat()} has no time zone")
    return out.astimezone(UTC)
