"""The one canary rule (fleet.rollout.choose_canary), without Dagster: only edges with a new
bundle can be canaries, at least one canary and one control, an explicit list must be
eligible; the deployment steps (fleet.deploy.run_rollouts) and start_rollout both use it."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mfg_assets.fleet import rollout as ro
from mfg_assets.fleet.deploy import DeploySettings, rollout_summary, run_rollouts
from mfg_assets.lake.registry import table
from mfg_assets_tests.edge.helpers import fleet_store

EDGES = ("edge-cam01", "edge-cam02", "edge-cam03", "edge-cam04")
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)

edge_ids = st.lists(st.from_regex(r"edge-[a-z0-9]{1,6}", fullmatch=True), min_size=2,
                    max_size=12, unique=True)


@given(edges=edge_ids, data=st.data(),
       fraction=st.floats(min_value=0.01, max_value=0.99))
def test_canaries_are_eligible_edges_never_the_whole_fleet(edges, data, fraction):
    eligible = data.draw(st.lists(st.sampled_from(edges), min_size=1, unique=True))
    canary = ro.choose_canary(edges, fraction, eligible=eligible)
    assert canary, "at least one canary"
    assert set(canary) <= set(eligible) and len(canary) < len(edges)
    count = min(len(edges) - 1, max(1, math.ceil(fraction * len(edges))))
    assert canary == sorted(eligible)[:count]  # deterministic: the first eligible, sorted
    assert ro.choose_canary(list(reversed(edges)), fraction, eligible=eligible) == canary


def test_edges_without_a_new_bundle_are_never_canaries():
    # A quarter of four edges is one: the first edge WITH a new bundle, not edge-cam01.
    assert ro.choose_canary(EDGES, 0.25, eligible=["edge-cam04", "edge-cam03"]) == [
        "edge-cam03"]
    assert ro.choose_canary(EDGES, 0.5) == ["edge-cam01", "edge-cam02"]  # all eligible
    with pytest.raises(ValueError, match="have no new bundle"):
        ro.choose_canary(EDGES, 0.25, eligible=["edge-cam03"], explicit=["edge-cam01"])
    with pytest.raises(ValueError, match="nothing to compare"):
        ro.choose_canary(EDGES, 0.25, explicit=EDGES)
    with pytest.raises(ValueError, match="no edge .* has a new bundle"):
        ro.choose_canary(EDGES, 0.25, eligible=[])
    assert ro.choose_canary(EDGES, 0.25, explicit=["edge-cam02", "edge-cam02"]) == [
        "edge-cam02"]


def add_bundles(lake, bundle_ids: dict[str, str]) -> None:
    spec = table("edge.bundles")
    rows = [{"bundle_id": b, "edge_id": e, "model": "vision_defect",
             "model_version": b.split("-")[1].lstrip("v"), "precision": "int8",
             "threshold": 0.5, "lineage": "{}", "store_uri": "test", "created_at": NOW}
            for e, b in bundle_ids.items()]
    lake.append(spec, pl.DataFrame(rows, schema=spec.polars_schema))


def test_deployment_starts_a_canary_on_an_edge_whose_bundle_changed(lake, tmp_path):
    store = fleet_store(tmp_path / "store", "vision", EDGES)  # every edge runs v1
    add_bundles(lake, {e: f"vision-v1-{e}" for e in EDGES})
    add_bundles(lake, {e: f"vision-v2-{e}" for e in EDGES[2:]})  # new for cam03, cam04 only
    [step] = run_rollouts(lake, store, DeploySettings(), NOW)
    assert step.action == "started" and step.rollout is not None
    assert step.rollout.canary_edges == ("edge-cam03",)
    assert step.rollout.control_edges == ("edge-cam01", "edge-cam02", "edge-cam04")
    assert store.assignment("edge-cam03").bundle_id == "vision-v2-edge-cam03"
    assert store.assignment("edge-cam04").bundle_id == "vision-v1-edge-cam04"
    assert step.rollout.candidate_version == "2"

    facts = rollout_summary([step])
    json.dumps(facts)  # plain data, nothing Dagster-specific
    assert facts["vision_defect/action"] == "started"
    assert facts["vision_defect/stage"] == "canary"
    assert f"| vision_defect | started | {step.rollout.rollout_id} | canary |" in facts[
        "rollouts"]


def test_an_explicit_canary_without_a_new_bundle_is_refused(lake, tmp_path):
    store = fleet_store(tmp_path / "store", "vision", EDGES)
    add_bundles(lake, {e: f"vision-v1-{e}" for e in EDGES})
    add_bundles(lake, {e: f"vision-v2-{e}" for e in EDGES[2:]})
    with pytest.raises(ValueError, match=r"\['edge-cam01'\] have no new bundle"):
        run_rollouts(lake, store, DeploySettings(canary_edges=("edge-cam01",)), NOW)
    assert store.assignment("edge-cam01").bundle_id == "vision-v1-edge-cam01"
    assert rollout_summary([]) == {"rollouts": "no edge bundles yet"}
