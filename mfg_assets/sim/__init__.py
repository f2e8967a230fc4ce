"""Plant simulator: a deterministic Unified Namespace with ground-truth faults and drift.

    from mfg_assets.sim import SimConfig, write_replay, publish
    write_replay(SimConfig(seed=7, duration_h=24), "data/replay")
    publish(SimConfig(duration_h=1), "mqtt://localhost:1883", speed=60)

No Dagster imports: the simulator is part of the stream plane.
"""

from mfg_assets.sim.config import DriftSpec, PlantLayout, SimConfig
from mfg_assets.sim.drift import DRIFT_SCENARIOS
from mfg_assets.sim.messages import SimMessage
from mfg_assets.sim.publish import publish
from mfg_assets.sim.replay import ReplaySummary, read_replay, write_replay
from mfg_assets.sim.stream import ground_truth, iter_messages

__all__ = [
    "DRIFT_SCENARIOS",
    "DriftSpec",
    "PlantLayout",
    "ReplaySummary",
    "SimConfig",
    "SimMessage",
    "ground_truth",
    "iter_messages",
    "publish",
    "read_replay",
    "write_replay",
]
