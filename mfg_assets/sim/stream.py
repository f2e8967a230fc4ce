"""The plant's message stream: every source merged in timestamp order, plus ground truth."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mfg_assets.sim.config import SimConfig
from mfg_assets.sim.device_faults import plan_device_faults
from mfg_assets.sim.drift import drift_records
from mfg_assets.sim.faults import plan_faults
from mfg_assets.sim.images import camera_messages
from mfg_assets.sim.messages import SimMessage
from mfg_assets.sim.process import unit_messages
from mfg_assets.sim.sparkplug_node import edge_node_messages
from mfg_assets.sim.telemetry import edge_messages
from mfg_assets.sim.welding import welder_messages


def _sources(config: SimConfig) -> list[Iterator[SimMessage]]:
    # The order of this list breaks timestamp ties, so it is fixed.
    plant = config.plant
    enabled = set(config.sources)
    sources: list[Iterator[SimMessage]] = []
    if "welding" in enabled:
        sources += [welder_messages(config, w) for w in plant.welders]
    if "press" in enabled and plant.press_machines:
        sources.append(edge_node_messages(config))
    if "process" in enabled:
        sources += [unit_messages(config, w) for w in plant.welders]
    if "images" in enabled:
        sources += [camera_messages(config, c) for c in plant.cameras]
    if "telemetry" in enabled:
        sources += [edge_messages(config, e) for e in plant.edges]
    return sources


def iter_messages(config: SimConfig) -> Iterator[SimMessage]:
    """All UNS messages of the run in timestamp order, as live traffic would arrive.

    Each source is a time-ordered generator; a heap merge interleaves them lazily.
    Sources compute their signal arrays up front (a few MB per simulated day) but build
    messages, and render images, only as the merge reaches them.
    """
    return heapq.merge(*_sources(config), key=lambda m: m.ts_ms)


def with_progress(
    messages: Iterable[SimMessage],
    config: SimConfig,
    on_progress: Callable[[str, int, int], None] | None,
) -> Iterator[SimMessage]:
    """``messages`` as they are, reporting ``on_progress("simulated minutes", done, total)``
    as their timestamps pass each simulated minute of the run (and ``total`` at the end).

    Minutes, not messages: the total is known before the first message is built.
    """
    if on_progress is None:
        yield from messages
        return
    total = max(1, -(-(config.end_ms - config.start_ms) // 60_000))  # ceiling
    reported = 0
    on_progress("simulated minutes", 0, total)
    for message in messages:
        minute = min(total, max(0, (message.ts_ms - config.start_ms) // 60_000))
        if minute > reported:  # one call per minute passed, not per message
            reported = minute
            on_progress("simulated minutes", reported, total)
        yield message
    if reported < total:
        on_progress("simulated minutes", total, total)


def ground_truth(config: SimConfig) -> list[dict[str, Any]]:
    """Every injected fault (machines and edge devices) and drift scenario of the run,
    ordered by start time."""
    records = [e.record(config.end_ms) for e in plan_faults(config)]
    records += [e.record(config.end_ms) for e in plan_device_faults(config)]
    records += drift_records(config)
    return sorted(
        records,
        key=lambda r: (
            r.get("onset_ms", r.get("start_ms", 0)),
            r["kind"],
            r.get("fault_id", r.get("scenario", "")),
        ),
    )
