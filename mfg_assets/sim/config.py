"""Simulator configuration: the plant layout and the knobs of one simulated run.

Everything a run produces is a pure function of a :class:`SimConfig`, so the config is
frozen, validated up front and serialisable (``to_dict``) into the replay manifest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from mfg_assets.plant_calendar import PlantCalendar
from mfg_assets.sim.drift import DRIFT_SCENARIOS
from mfg_assets.uns.topics import MessageClass, UnsTopic

SOURCES = ("welding", "press", "process", "images", "telemetry")
IMAGE_LABELS = ("ok", "scratch", "dent", "missing_part")


@dataclass(frozen=True, slots=True)
class Welder:
    cell: str
    machine_id: str
    # Nominal arc current of the cell's recipe; the other set points follow from it.
    arc_current_a: float
    machine_type: str = "welder"


@dataclass(frozen=True, slots=True)
class PressMachine:
    cell: str
    machine_id: str
    machine_type: str  # "press" or "cnc"


@dataclass(frozen=True, slots=True)
class Camera:
    cell: str
    camera_id: str
    # Each camera sits under its own light: a brightness offset (grey levels) and a
    # contrast factor give two edges measurably different input distributions.
    brightness: float = 0.0
    contrast: float = 1.0
    noise: float = 4.0


@dataclass(frozen=True, slots=True)
class Edge:
    edge_id: str
    area: str
    line: str
    cell: str
    firmware: str
    kind: str  # "line" or "camera": camera edges run vision inference, so busier CPUs


@dataclass(frozen=True, slots=True)
class PlantLayout:
    enterprise: str = "acme"
    site: str = "detroit"
    weld_area: str = "body"
    weld_line: str = "weld1"
    welders: tuple[Welder, ...] = (
        Welder("cell01", "weld-01", 195.0),
        Welder("cell02", "weld-02", 210.0),
        Welder("cell03", "weld-03", 225.0),
    )
    press_area: str = "press"
    press_line: str = "press1"
    press_machines: tuple[PressMachine, ...] = (
        PressMachine("cell01", "press-01", "press"),
        PressMachine("cell02", "cnc-01", "cnc"),
        PressMachine("cell03", "cnc-02", "cnc"),
    )
    sparkplug_group: str = "detroit"
    edge_node: str = "press1-gw"
    inspect_area: str = "assembly"
    inspect_line: str = "final1"
    cameras: tuple[Camera, ...] = (
        Camera("inspect01", "cam-01"),
        Camera("inspect02", "cam-02", brightness=14.0, contrast=0.92, noise=5.0),
    )
    edges: tuple[Edge, ...] = (
        Edge("edge-weld1", "body", "weld1", "cell01", "2.3.1", "line"),
        Edge("edge-press1", "press", "press1", "cell01", "2.3.1", "line"),
        Edge("edge-cam01", "assembly", "final1", "inspect01", "2.4.0", "camera"),
        Edge("edge-cam02", "assembly", "final1", "inspect02", "2.3.1", "camera"),
    )

    def topic(
        self, area: str, line: str, cell: str, asset: str, message_class: MessageClass
    ) -> UnsTopic:
        """The UNS topic of an asset of this plant."""
        return UnsTopic(self.enterprise, self.site, area, line, cell, asset, message_class)


@dataclass(frozen=True, slots=True)
class DriftSpec:
    """A named drift scenario switched on ``start_offset_h`` hours into the run."""

    name: str
    start_offset_h: float

    def __post_init__(self) -> None:
        if self.name not in DRIFT_SCENARIOS:
            known = ", ".join(DRIFT_SCENARIOS)
            raise ValueError(f"unknown drift scenario {self.name!r}; known: {known}")
        if self.start_offset_h < 0:
            raise ValueError(f"drift {self.name!r} starts before the run ({self.start_offset_h} h)")


DEFAULT_START = datetime(2026, 11, 1, tzinfo=UTC)


def _as_drift(value: DriftSpec | Iterable[Any]) -> DriftSpec:
    return value if isinstance(value, DriftSpec) else DriftSpec(*value)


def _as_utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"start time {value.isoformat()} has no timezone; give it in UTC")
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class SimConfig:
    """One simulated run. Same config -> byte-identical output."""

    seed: int = 42
    start: datetime = DEFAULT_START  # an ISO string ("2026-11-01T00:00:00Z") is accepted too
    duration_h: float = 24.0
    sensor_period_s: float = 10.0
    unit_period_s: float = 30.0  # per welding cell
    image_period_s: float = 60.0  # per camera
    telemetry_period_s: float = 60.0  # per edge
    image_size: int = 64
    # Expected fault onsets per machine per simulated day (press/cnc degradations and
    # welder faults alike); 0 gives a healthy plant.
    fault_rate_per_day: float = 0.8
    # Expected edge device faults (memory leak, thermal throttling, crash loop) per edge
    # per simulated day (mfg_assets.sim.device_faults); 0, the default, gives a healthy fleet.
    device_fault_rate_per_day: float = 0.0
    # Share of inspected units per label; must sum to 1.
    image_class_mix: tuple[tuple[str, float], ...] = (
        ("ok", 0.7),
        ("scratch", 0.1),
        ("dent", 0.1),
        ("missing_part", 0.1),
    )
    # Drift scenarios; (name, start_offset_h) pairs are accepted and normalised.
    drift: tuple[DriftSpec, ...] = ()
    sources: tuple[str, ...] = SOURCES
    yield_threshold: float = 90.0
    plant: PlantLayout = field(default_factory=PlantLayout)
    # Shifts, working days, holidays and planned stops the simulated plant follows (its
    # clock too: the default is UTC-5 without DST).
    calendar: PlantCalendar = field(default_factory=PlantCalendar)

    def __post_init__(self) -> None:
        # Normalise friendly inputs (ISO strings, (name, hours) pairs) into canonical types.
        object.__setattr__(self, "start", _as_utc(self.start))
        specs = tuple(_as_drift(d) for d in self.drift)
        object.__setattr__(self, "drift", specs)
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "image_class_mix", tuple(tuple(p) for p in self.image_class_mix))
        self._validate()

    def _validate(self) -> None:
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if self.duration_h <= 0:
            raise ValueError(f"duration_h must be positive, got {self.duration_h}")
        for name in ("sensor_period_s", "unit_period_s", "image_period_s", "telemetry_period_s"):
            if getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be at least 1 s, got {getattr(self, name)}")
        if not 64 <= self.image_size <= 128:
            raise ValueError(f"image_size must be within 64..128 px, got {self.image_size}")
        if self.fault_rate_per_day < 0:
            raise ValueError(f"fault_rate_per_day must be >= 0, got {self.fault_rate_per_day}")
        if self.device_fault_rate_per_day < 0:
            raise ValueError("device_fault_rate_per_day must be >= 0, got "
                             f"{self.device_fault_rate_per_day}")
        unknown = [s for s in self.sources if s not in SOURCES]
        if unknown:
            raise ValueError(f"unknown sources {unknown}; known: {', '.join(SOURCES)}")
        labels = [label for label, _ in self.image_class_mix]
        if sorted(labels) != sorted(set(labels)) or not set(labels) <= set(IMAGE_LABELS):
            raise ValueError(f"image_class_mix labels must be distinct of {IMAGE_LABELS}")
        total = sum(share for _, share in self.image_class_mix)
        if abs(total - 1.0) > 1e-6 or any(share < 0 for _, share in self.image_class_mix):
            raise ValueError(f"image_class_mix shares must be >= 0 and sum to 1, got {total}")

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        return self.start_ms + round(self.duration_h * 3_600_000)

    def drift_start_ms(self, name: str) -> int | None:
        """When scenario ``name`` switches on in this run, or None if it does not."""
        starts = [d.start_offset_h for d in self.drift if d.name == name]
        if not starts:
            return None
        return self.start_ms + round(min(starts) * 3_600_000)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view for the manifest."""
        out = asdict(self)
        out["start"] = self.start.isoformat().replace("+00:00", "Z")
        out["drift"] = [[d.name, d.start_offset_h] for d in self.drift]
        out["image_class_mix"] = dict(self.image_class_mix)
        out["sources"] = list(self.sources)
        out["calendar"] = self.calendar.to_dict()
        return out
