"""Resumable training: keys, interrupted and resumed loops, torn slots, SIGTERM."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mfg_assets.ml import anomaly, checkpoint
from mfg_assets_tests.ml.crashing_store import Crash, CrashingStore

PARAMS = {"epochs": 12, "hidden": 16, "latent": 4}


@pytest.fixture(scope="module")
def welders(sensor_windows: pl.DataFrame) -> pl.DataFrame:
    return sensor_windows.filter(pl.col("machine_type").is_in(["welder", "press"]))


def _state(trained) -> dict[str, torch.Tensor]:
    return trained.model.state_dict()


def _same_weights(a, b) -> None:
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    for name in sa:
        torch.testing.assert_close(sa[name], sb[name], rtol=0, atol=0, msg=name)


_KEY = dict(asset="models/sensor_anomaly", partition=None, data_versions={"f.x": 3},
            params={"budget": 1, "seed": 0})


@given(field=st.sampled_from(sorted(_KEY)), value=st.one_of(
    st.text(max_size=8), st.integers(), st.dictionaries(st.text(max_size=4), st.integers())))
def test_resume_key_is_the_same_only_for_the_same_work(field, value):
    assert checkpoint.resume_key(**_KEY) == checkpoint.resume_key(**dict(_KEY))
    changed = {**_KEY, field: value}
    if changed[field] != _KEY[field]:
        if field in ("data_versions", "params") and not isinstance(value, dict):
            return  # not a mapping: not a key anyone builds
        assert checkpoint.resume_key(**changed) != checkpoint.resume_key(**_KEY)


def test_without_a_scope_training_writes_nothing(welders, tmp_path):
    assert checkpoint.current() is None
    anomaly.train(welders, PARAMS, seed=0)
    assert not list(tmp_path.iterdir())


def test_interrupted_training_resumes_and_ends_with_the_same_weights(welders, tmp_path):
    plain = anomaly.train(welders, PARAMS, seed=0)
    store = CrashingStore(tmp_path, after_writes=5)
    with checkpoint.scope(store, "k") as first, pytest.raises(Crash):
        anomaly.train(welders, PARAMS, seed=0)
    assert first.saved and max(first.saved.values()) > 0  # something to resume from
    store.left = -1  # the retry's machine does not crash
    with checkpoint.scope(store, "k") as second:
        resumed = anomaly.train(welders, PARAMS, seed=0)
    assert second.resumed and min(second.resumed.values()) > 0
    _same_weights(resumed, plain)
    assert resumed.holdout_metrics == plain.holdout_metrics
    # a finished unit is saved at its last epoch: a third attempt trains nothing
    store.epochs.clear()
    with checkpoint.scope(store, "k") as third:
        again = anomaly.train(welders, PARAMS, seed=0)
    assert set(third.resumed.values()) == {PARAMS["epochs"]} and store.epochs == []
    _same_weights(again, plain)


def test_other_work_does_not_resume(welders, tmp_path):
    store = checkpoint.DirectoryStore(tmp_path)
    with checkpoint.scope(store, "k"):
        anomaly.train(welders, PARAMS, seed=0)
    with checkpoint.scope(store, "k") as other_params:
        anomaly.train(welders, {**PARAMS, "lr": 1e-3}, seed=0)
    assert other_params.resumed == {}


def test_a_torn_slot_falls_back_to_the_other(welders, tmp_path):
    plain = anomaly.train(welders, PARAMS, seed=0)
    store = CrashingStore(tmp_path, after_writes=4)
    with checkpoint.scope(store, "k"), pytest.raises(Crash):
        anomaly.train(welders, PARAMS, seed=0)
    slots = sorted(tmp_path.glob("*/slot*.pt"))
    newest = max(slots, key=lambda p: p.stat().st_mtime_ns)
    newest.write_bytes(newest.read_bytes()[:100])  # kill -9 in the middle of its write
    store.left = -1
    with checkpoint.scope(store, "k") as retry:
        resumed = anomaly.train(welders, PARAMS, seed=0)
    assert retry.resumed
    _same_weights(resumed, plain)


class TermStore(checkpoint.DirectoryStore):
    """Sends this process SIGTERM once, right after the given write."""

    def __init__(self, root: Path, at_write: int) -> None:
        super().__init__(root)
        self.writes = 0
        self.at_write = at_write

    def write(self, name: str, slot: int, data: bytes, epoch: int) -> None:
        super().write(name, slot, data, epoch)
        self.writes += 1
        if self.writes == self.at_write:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_saves_and_raises_preempted_then_resumes(welders, tmp_path):
    plain = anomaly.train(welders, PARAMS, seed=0)
    before = signal.getsignal(signal.SIGTERM)
    store = TermStore(tmp_path, at_write=3)
    with checkpoint.scope(store, "k") as first, pytest.raises(checkpoint.Preempted):
        anomaly.train(welders, PARAMS, seed=0)
    assert signal.getsignal(signal.SIGTERM) == before  # handler restored
    saved = max(first.saved.values())
    store.at_write = -1
    with checkpoint.scope(store, "k") as retry:
        resumed = anomaly.train(welders, PARAMS, seed=0)
    assert max(retry.resumed.values()) == saved > 0
    _same_weights(resumed, plain)
    np.testing.assert_array_equal(resumed.model.score(welders), plain.model.score(welders))
