"""Named automation conditions, composed in one place so the policy reads as a whole."""

from __future__ import annotations

import dagster as dg


def follow_new_data() -> dg.AutomationCondition:
    """Rematerialize when an upstream table has new data (latest partition for daily assets).

    Unlike plain ``eager()``, missing old partitions do not block it: a new plant starts with
    years of empty history and must still follow today's data.
    """
    return (
        dg.AutomationCondition.in_latest_time_window()
        & (
            dg.AutomationCondition.any_deps_updated()
            | dg.AutomationCondition.newly_missing()
        ).since_last_handled()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("follow_new_data")
