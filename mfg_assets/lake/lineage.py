"""Delta versions: what a commit read, and which tables moved.

A table built from others records the Delta version of each input in its own commit's
metadata (``mfg.read.<layer.name> = <version>``): :func:`read_commit` spells those entries,
:func:`read_lineage` reads them back from a commit, so a model that records the feature
version it trained on can be traced to the silver versions behind it.
:func:`changed_versions` is the diff a sensor polls: tables whose version moved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import TableSpec, table

READ_PREFIX = "mfg.read."  # commit metadata key prefix: mfg.read.<table> = version read


def read_commit(versions: Mapping[str, int | None]) -> dict[str, str]:
    """Commit metadata recording the input versions (``None``: the input did not exist)."""
    return {f"{READ_PREFIX}{name}": str(version) for name, version in versions.items()}


def read_lineage(lake: Lake, spec: TableSpec, version: int) -> dict[str, int | None]:
    """The input versions ``spec``'s commit ``version`` was built from ({} when unknown)."""
    for commit in lake.table(spec).history(limit=100):
        if int(commit["version"]) == version:
            return {
                key.removeprefix(READ_PREFIX): None if value == "None" else int(value)
                for key, value in commit.items()
                if key.startswith(READ_PREFIX)
            }
    return {}


def changed_versions(lake: Lake, names: Iterable[str], seen: Mapping[str, int]) -> dict[str, int]:
    """Tables (of ``names``) whose Delta version moved past ``seen``; absent tables skipped."""
    changed = {}
    for name in names:
        version = lake.version(table(name))
        if version is not None and version != seen.get(name):
            changed[name] = version
    return changed
