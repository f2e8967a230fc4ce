"""Partitions shared by the asset groups."""

from __future__ import annotations

import dagster as dg

from mfg_assets.settings import get_settings

# Silver and everything daily downstream: one partition per UTC day of event time.
daily = dg.DailyPartitionsDefinition(
    start_date=get_settings().partition_start.isoformat(), timezone="UTC", end_offset=1
)
