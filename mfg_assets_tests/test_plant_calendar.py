"""The plant calendar: day types, shifts and stops on the plant's own clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mfg_assets.plant_calendar import (
    DAY_TYPE,
    HOLIDAY,
    NO_SHIFT,
    PLANNED_STOP,
    SHIFT,
    WEEKEND,
    WORKDAY,
    CalendarError,
    PlantCalendar,
    load_calendar,
)
from mfg_assets.sim.config import SimConfig
from mfg_assets.sim.schedule import shift_level

BERLIN = {
    "timezone": "Europe/Berlin",
    "shifts": [{"name": "early", "start_hour": 6, "hours": 8},
               {"name": "late", "start_hour": 14, "hours": 8}],
    "working_days": [0, 1, 2, 3, 4],
    "weekend_pace": 0.0,
    "holidays": ["2026-12-25"],
    "planned_stops": [{"start": "2026-12-09T06:00:00+01:00", "end": "2026-12-09T14:00:00+01:00",
                       "reason": "press maintenance"}],
}


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_day_types_shifts_and_stops_follow_the_local_clock() -> None:
    cal = PlantCalendar.from_dict(BERLIN)
    times = [_utc(2026, 12, 7, 5, 30),   # Monday 06:30 Berlin: early shift
             _utc(2026, 12, 7, 21, 30),  # Monday 22:30 Berlin: no night shift here
             _utc(2026, 12, 12, 9, 0),   # Saturday
             _utc(2026, 12, 25, 9, 0),   # holiday (a Friday)
             _utc(2026, 12, 9, 8, 0)]    # Wednesday in the planned stop
    frame = cal.annotate(pl.DataFrame({"ts": times}), "ts")
    assert frame[DAY_TYPE].to_list() == [WORKDAY, WORKDAY, WEEKEND, HOLIDAY, WORKDAY]
    assert frame[SHIFT].to_list() == ["early", NO_SHIFT, "early", "early", "early"]
    assert frame[PLANNED_STOP].to_list() == [False, False, False, False, True]
    pace = cal.pace(np.array([int(t.timestamp() * 1000) for t in times]))
    assert pace.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]  # closed weekend, holiday, stop


def test_daylight_saving_moves_the_shift_in_utc() -> None:
    cal = PlantCalendar.from_dict(BERLIN)
    # 05:30 UTC is 06:30 in winter (early shift) but 07:30 in summer: both early; 04:30 UTC
    # is 05:30 in winter (off) and 06:30 in summer (early).
    assert cal.shift_at(_utc(2026, 1, 12, 4, 30)) == NO_SHIFT
    assert cal.shift_at(_utc(2026, 7, 13, 4, 30)) == "early"


def test_simulator_follows_the_calendar() -> None:
    """Weekend pace, holidays and planned stops reach the simulated machines' pace."""
    monday = _utc(2026, 11, 2, 5)  # 00:00 local (UTC-5)
    stop = {"start": "2026-11-03T15:00:00+00:00", "end": "2026-11-03T17:00:00+00:00"}
    cal = PlantCalendar.from_dict({"holidays": ["2026-11-04"], "planned_stops": [stop]})
    config = SimConfig(start=monday, duration_h=24 * 7, calendar=cal)
    ts = config.start_ms + np.arange(0, 7 * 24 * 60, 1, dtype=np.int64) * 60_000
    level = shift_level(config, ts)
    frame = cal.annotate(pl.DataFrame({"ts": ts}), "ts")
    day, shift = frame[DAY_TYPE].to_numpy(), frame[SHIFT].to_numpy()
    early = shift == "early"
    assert level[(day == WORKDAY) & early].max() == 1.0
    assert level[(day == WEEKEND) & early].max() == pytest.approx(0.75)
    assert level[day == HOLIDAY].max() == 0.0
    assert level[frame[PLANNED_STOP].to_numpy()].max() == 0.0
    assert set(shift) == {"early", "late", "night"}
    # breaks and handovers stay the simulator's own
    running = (day == WORKDAY) & early & ~frame[PLANNED_STOP].to_numpy()
    assert 0 < level[running].min() < 0.1


def test_bad_calendars_are_refused_with_the_reason(tmp_path) -> None:
    with pytest.raises(CalendarError, match="time zone"):
        PlantCalendar.from_dict({"timezone": "Mars/Olympus"})
    with pytest.raises(CalendarError, match="unknown calendar keys"):
        PlantCalendar.from_dict({"shift": []})
    with pytest.raises(CalendarError, match="ends before"):
        PlantCalendar.from_dict({"planned_stops": [
            {"start": "2026-12-09T06:00:00+00:00", "end": "2026-12-09T05:00:00+00:00"}]})
    with pytest.raises(CalendarError, match="time zone"):
        PlantCalendar.from_dict({"planned_stops": [
            {"start": "2026-12-09T06:00:00", "end": "2026-12-09T07:00:00"}]})
    bad = tmp_path / "cal.yaml"
    bad.write_text("timezone: [unclosed\n")
    with pytest.raises(CalendarError, match="cannot read"):
        load_calendar(bad)


def test_calendar_file_from_settings_round_trips(tmp_path, monkeypatch) -> None:
    import yaml

    path = tmp_path / "calendar.yaml"
    path.write_text(yaml.safe_dump(BERLIN))
    monkeypatch.setenv("MFG_PLANT_CALENDAR", str(path))
    cal = load_calendar()
    assert cal == PlantCalendar.from_dict(cal.to_dict())
    assert cal.holidays == frozenset({date(2026, 12, 25)})
    assert cal.running_days(date(2026, 12, 21), date(2026, 12, 27)) == [
        date(2026, 12, 21) + timedelta(days=i) for i in range(4)]


# Up to 2037: past the last transition tzdata lists explicitly, polars' zone rules and
# zoneinfo's disagree on DST (seen for 2100); plant data is not from there.
@settings(max_examples=200, deadline=None)
@given(st.lists(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2037, 12, 31),
                             timezones=st.just(UTC)), min_size=1, max_size=30))
def test_vectorised_annotation_agrees_with_single_timestamps(times) -> None:
    cal = PlantCalendar.from_dict(BERLIN)
    frame = cal.annotate(pl.DataFrame({"ts": times}), "ts")
    for when, shift, day, stopped in zip(times, frame[SHIFT], frame[DAY_TYPE],
                                         frame[PLANNED_STOP], strict=True):
        assert shift == cal.shift_at(when)
        assert day == cal.day_type(cal.local(when).date())
        assert stopped == cal.in_planned_stop(when)
