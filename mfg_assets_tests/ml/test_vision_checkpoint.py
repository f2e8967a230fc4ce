"""Resumable training of the image families (vision_defect, part_detection): a loop cut off
after some epochs (SIGTERM, or the machine gone) resumes from its checkpoint and ends with
the same weights and metrics as an uninterrupted run, training only the epochs left.

Small data and nets, one torch thread (bit-identical on CPU); the SIGTERM test keeps its
checkpoints in MLflow (sqlite + artifact folder in tmp_path), as a Dagster run does.
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal

import polars as pl
import pytest
import torch
from dagster._core.errors import DagsterExecutionInterruptedError, raise_execution_interrupts
from mlflow import MlflowClient

from mfg_assets.ml import checkpoint, detection, vision
from mfg_assets_tests.ml.crashing_store import Crash, CrashingStore
from mfg_assets_tests.ml.detection_model import small_boards

# no early stop: patience beyond the epochs
VISION = {"epochs": 6, "channels": 4, "threads": 1, "patience": 100, "batch_size": 32,
          "disk_cache": False}
EPOCH_LOG = re.compile(r"vision epoch (\d+)/")


@pytest.fixture(scope="module")
def images(image_dataset: pl.DataFrame) -> pl.DataFrame:
    return image_dataset.filter(pl.int_range(pl.len()).over("split") < 96)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        torch.testing.assert_close(sa[name], sb[name], rtol=0, atol=0, msg=name)


def _same_metrics(a: dict[str, float], b: dict[str, float]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k], k


def _epochs_trained(caplog: pytest.LogCaptureFixture) -> list[int]:
    return [int(m.group(1)) for r in caplog.records if (m := EPOCH_LOG.match(r.getMessage()))]


class TermAtEpoch(logging.Handler):
    """Sends this process SIGTERM (or ``signum``) when the loop logs the end of epoch ``at``
    (before that epoch's checkpoint): what a spot VM's preemption notice does mid-training."""

    def __init__(self, at: int, signum: int = signal.SIGTERM) -> None:
        super().__init__()
        self.at = at
        self.signum = signum

    def emit(self, record: logging.LogRecord) -> None:
        found = EPOCH_LOG.match(record.getMessage())
        if found and int(found.group(1)) == self.at:
            self.at = -1
            os.kill(os.getpid(), self.signum)


def test_sigterm_saves_to_mlflow_and_the_retry_trains_only_the_rest(images, tmp_path, caplog):
    plain = vision.train(images, VISION, seed=0)
    assert plain.info["epochs_run"] == VISION["epochs"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    where = (tmp_path / "artifacts").as_uri()
    before = signal.getsignal(signal.SIGTERM)
    term = TermAtEpoch(at=4)
    vision.log.addHandler(term)
    caplog.set_level(logging.INFO, logger=vision.log.name)
    try:
        with (pytest.raises(checkpoint.Preempted, match="saved at epoch 3 of 6"),
              checkpoint.mlflow_scope(client, "k", artifact_location=where,
                                      min_interval_s=3600) as first):  # no epoch saves
            vision.train(images, VISION, seed=0)
    finally:
        vision.log.removeHandler(term)
    assert signal.getsignal(signal.SIGTERM) == before  # handler restored
    # saved by the SIGTERM (epochs are not saved within the hour); epoch 4 was cut off
    assert list(first.saved.values()) == [3]
    (run,) = client.search_runs([client.get_experiment_by_name(checkpoint.EXPERIMENT)
                                 .experiment_id])
    assert run.info.status == "FAILED"  # kept for the retry
    assert list((tmp_path / "artifacts").rglob("slot*.pt"))  # in the given artifact store

    caplog.clear()
    with checkpoint.mlflow_scope(client, "k", artifact_location=where) as retry:
        resumed = vision.train(images, VISION, seed=0)
    assert list(retry.resumed.values()) == [3]
    assert _epochs_trained(caplog) == [4, 5, 6]  # only the epochs left
    _same_weights(resumed.model, plain.model)
    _same_metrics(resumed.metrics, plain.metrics)
    _same_metrics(resumed.holdout_metrics, plain.holdout_metrics)
    assert resumed.info["defect_threshold"] == plain.info["defect_threshold"]
    assert (resumed.info["epochs_run"], resumed.info["best_epoch"]) == (
        plain.info["epochs_run"], plain.info["best_epoch"])
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "deleted"  # work done


def test_dagsters_step_interrupt_saves_first_then_interrupts(images, tmp_path, caplog):
    """Kubernetes sends SIGTERM to the run worker; under the multiprocess executor that
    interrupts the step process with SIGINT, which Dagster's step code turns into
    DagsterExecutionInterruptedError. The loop saves its newest epoch before that."""
    caplog.set_level(logging.INFO, logger=vision.log.name)  # the epoch lines are INFO
    plain = vision.train(images, VISION, seed=0)
    store = checkpoint.DirectoryStore(tmp_path)
    interrupt = TermAtEpoch(at=4, signum=signal.SIGINT)
    vision.log.addHandler(interrupt)
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the test runner was started so
    try:
        with (raise_execution_interrupts(),
              pytest.raises(DagsterExecutionInterruptedError),
              checkpoint.scope(store, "k", min_interval_s=3600) as first):  # no epoch saves
            inside = signal.getsignal(signal.SIGINT)
            vision.train(images, VISION, seed=0)
        assert first.saved == {name: 3 for name in first.saved} and first.saved
        assert signal.getsignal(signal.SIGINT) == before  # restored
    finally:
        vision.log.removeHandler(interrupt)
    assert inside not in (before, signal.default_int_handler)  # Dagster's own was in place
    caplog.clear()
    with checkpoint.scope(store, "k") as retry:
        resumed = vision.train(images, VISION, seed=0)
    assert list(retry.resumed.values()) == [3]
    assert _epochs_trained(caplog) == [4, 5, 6]
    _same_weights(resumed.model, plain.model)


def test_early_stopping_resumes_and_a_stopped_loop_stays_stopped(images, tmp_path, caplog):
    # stop after three epochs no better than the best so far; the crash below comes after
    # epoch 2, with one such epoch counted: a retry that forgot it would stop later
    params = {**VISION, "epochs": 14, "patience": 3, "min_epochs": 2,
              "learning_loss_ratio": 100.0}
    plain = vision.train(images, params, seed=0)
    stopped_at = plain.info["epochs_run"]
    assert 3 < stopped_at < params["epochs"]  # it did stop early, after the crash point
    store = CrashingStore(tmp_path, after_writes=2)
    with checkpoint.scope(store, "k"), pytest.raises(Crash):
        vision.train(images, params, seed=0)
    store.left = -1
    with checkpoint.scope(store, "k") as retry:
        resumed = vision.train(images, params, seed=0)
    assert list(retry.resumed.values()) == [2]
    assert resumed.info["epochs_run"] == stopped_at
    assert resumed.info["best_epoch"] == plain.info["best_epoch"]
    _same_weights(resumed.model, plain.model)
    _same_metrics(resumed.holdout_metrics, plain.holdout_metrics)
    assert store.epochs[-1] == stopped_at  # the early stop itself was saved at once
    # a third attempt finds the loop stopped: it trains nothing and ends the same
    caplog.set_level(logging.INFO, logger=vision.log.name)
    caplog.clear()
    with checkpoint.scope(store, "k") as third:
        again = vision.train(images, params, seed=0)
    assert list(third.resumed.values()) == [stopped_at]
    assert _epochs_trained(caplog) == []
    _same_weights(again.model, plain.model)


def _crash_after_two_epochs_then_resume(train, tmp_path):
    """The plain run, and a retry of a run whose machine went away after epoch 2 of 4."""
    plain = train()
    store = CrashingStore(tmp_path, after_writes=2)
    with checkpoint.scope(store, "k"), pytest.raises(Crash):
        train()
    store.left = -1
    with checkpoint.scope(store, "k") as retry:
        resumed = train()
    assert list(retry.resumed.values()) == [2]
    assert store.epochs[2:] == [3, 4]  # the retry trained (and saved) epochs 3 and 4 only
    _same_weights(resumed.model, plain.model)
    _same_metrics(resumed.holdout_metrics, plain.holdout_metrics)
    return plain, resumed


def test_one_class_resumes_with_the_same_weights(images, tmp_path):
    params = {**VISION, "mode": "one_class", "epochs": 4}
    plain, resumed = _crash_after_two_epochs_then_resume(
        lambda: vision.train(images, params, seed=0), tmp_path)
    assert resumed.info["threshold"] == plain.info["threshold"]


def test_part_detection_resumes_with_the_same_weights(tmp_path):
    boards = small_boards().filter(pl.int_range(pl.len()).over("split") < 64)
    params = {"channels": 4, "epochs": 4, "batch_size": 16, "lr": 6e-3, "threads": 1}
    _crash_after_two_epochs_then_resume(lambda: detection.train(boards, params, seed=0), tmp_path)


def test_threads_and_the_image_cache_do_not_split_the_work():
    # a retry on a machine with another core count (or no cache) resumes the same loop
    a = vision._unit_params({**vision.DEFAULT_PARAMS, "threads": 1})
    b = vision._unit_params({**vision.DEFAULT_PARAMS, "threads": 8, "disk_cache": False})
    assert a == b and "threads" not in a
    assert vision._unit_params({**vision.DEFAULT_PARAMS, "lr": 1e-2}) != a
