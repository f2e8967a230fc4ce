"""A model whose family code changed is retrained at the next tick; the gate still decides.

The model asset's ``code_version`` hashes its family module's source and registry entry
(``mfg_assets.ml.versioning``). Here the definitions are built twice, the second time with
another module source (the hashing input is monkeypatched): the automation condition then
requests the challenger between nightly ticks (the champion only behind its blocking
promotion gate), and Dagster shows the last materialization, made with the old code
version, as stale.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import dagster as dg
import pytest
from dagster._core.definitions.data_version import StaleCauseCategory, StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from mfg_assets.defs.models import (
    GATE,
    champion_key,
    family_model_assets,
    model_key,
    model_resources,
)
from mfg_assets.defs.resources import default_resources
from mfg_assets.ml import versioning
from mfg_assets.ml.families import spec

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)  # between nightly retraining ticks
FAMILY = "sensor_anomaly"
KEY = model_key(FAMILY)


def definitions(monkeypatch: pytest.MonkeyPatch, source: bytes) -> dg.Definitions:
    monkeypatch.setattr(versioning, "module_source", lambda module: source)
    resources = {**default_resources(), **model_resources()}
    return dg.Definitions(assets=family_model_assets([spec(FAMILY)]), resources=resources)


def evaluate(defs: dg.Definitions, instance: dg.DagsterInstance, cursor=None):
    return dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor,
                                             evaluation_time=NOW)


def materialize_with_code_version(instance: dg.DagsterInstance, code_version: str) -> None:
    """A real materialization of the model's key recorded with ``code_version`` (training a
    real model here would only make the test slow: the condition reads versions, not data)."""

    @dg.asset(key=KEY, code_version=code_version)
    def trained() -> None:
        return None

    assert dg.materialize([trained], instance=instance).success


def test_a_changed_module_retrains_the_model_and_leaves_the_champion_to_the_gate(
        monkeypatch, data_dir):
    instance = dg.DagsterInstance.ephemeral()
    old = definitions(monkeypatch, b"def train(): return 1\n")
    old_version = old.resolve_asset_graph().get(KEY).code_version
    assert old_version == versioning.family_code_version(FAMILY)
    materialize_with_code_version(instance, old_version)

    first = evaluate(old, instance)
    again = evaluate(old, instance, first.cursor)
    assert again.get_num_requested(KEY) == 0  # same code, no cron tick: nothing to do

    new = definitions(monkeypatch, b"def train(): return 2\n")
    assert new.resolve_asset_graph().get(KEY).code_version != old_version
    changed = evaluate(new, instance, again.cursor)
    assert changed.get_num_requested(KEY) == 1
    # the champion follows in the same run, behind the challenger's blocking gate: when the
    # new code's model does not beat the champion, the alias does not move
    assert changed.get_num_requested(champion_key(FAMILY)) == 1
    (gate,) = new.get_assets_def(KEY).check_specs
    assert gate.name == GATE and gate.blocking
    # requested once: the next tick does not ask again while the retrain is handled
    assert evaluate(new, instance, changed.cursor).get_num_requested(KEY) == 0

    # the catalog says why: the last materialization ran older code
    status = get_stale_status_resolver(instance, list(new.assets))
    assert status.get_status(KEY) == StaleStatus.STALE
    assert StaleCauseCategory.CODE in {c.category for c in status.get_stale_causes(KEY)}
    before = get_stale_status_resolver(instance, list(old.assets)).get_stale_causes(KEY)
    assert StaleCauseCategory.CODE not in {c.category for c in before}


def test_code_version_follows_module_source_and_registry_entry(monkeypatch):
    entry = spec(FAMILY)
    base = versioning.family_code_version(entry)
    assert base == versioning.family_code_version(FAMILY)  # stable for the same inputs
    stricter = dataclasses.replace(
        entry, model=dataclasses.replace(entry.model, floors={**entry.model.floors, "f1": 0.6}))
    assert versioning.family_code_version(stricter) != base
    other_table = dataclasses.replace(entry, feature_table="features.process_units")
    assert versioning.family_code_version(other_table) != base
    # the description is part of the entry too; only the module source moves the rest
    monkeypatch.setattr(versioning, "module_source", lambda module: b"changed")
    assert versioning.family_code_version(entry) != base
    # every family's module is found without importing it
    assert len({versioning.family_code_version(n) for n in
                ("sensor_anomaly", "vision_defect", "process_yield")}) == 3


def test_entry_text_is_the_same_whatever_the_set_order():
    entry = spec(FAMILY)
    reordered = dataclasses.replace(entry, kinds=frozenset(sorted(entry.kinds, reverse=True)))
    assert versioning.entry_text(reordered) == versioning.entry_text(entry)
