"""A training run killed half-way (kill -9) resumes from its MLflow checkpoints on retry.

Real parts: the production challenger asset in a Dagster job on an on-disk instance (the
project's ``dagster.yaml``, run retries on), MLflow on sqlite, Delta on tmp_path, each run in
a process of its own (``resumable_run.py``). The killed run is marked failed as run
monitoring would, the daemon's ``should_retry`` agrees it is retried, and the retry is the
daemon's re-execution from failure.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import JobFailureData, RunFailureReason
from dagster._daemon.auto_run_reexecution.auto_run_reexecution import should_retry

from mfg_assets.defs.checkpoints import RESUMED_TAG
from mfg_assets.defs.models import model_key
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import table
from mfg_assets.ml import checkpoint, features
from mfg_assets.ml.registry import ModelRegistry
from mfg_assets.monitoring.cost import CPU_S
from mfg_assets.sim import SimConfig
from mfg_assets_tests.ml.resumable_run import EPOCHS
from mfg_assets_tests.ml.simdata import simulate_silver

REPO = Path(__file__).resolve().parents[2]
RUN = SimConfig(seed=6, duration_h=12, sources=("welding", "press"), fault_rate_per_day=3.0)
KEY = model_key("sensor_anomaly")


def _launch(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mfg_assets_tests.ml.resumable_run", *args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def _cpu_s() -> float:
    """CPU seconds of this process's finished children: a fair clock on a busy shared box."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _saved_epochs(registry: ModelRegistry) -> dict[str, int]:
    """unit -> newest epoch saved, of the open checkpoint run (empty before it exists)."""
    found = registry.client.get_experiment_by_name(checkpoint.EXPERIMENT)
    if found is None:
        return {}
    runs = registry.client.search_runs([found.experiment_id], "attributes.status = 'RUNNING'")
    tags = runs[0].data.tags if runs else {}
    return {k.removeprefix("mfg.checkpoint."): int(v) for k, v in tags.items()
            if k.startswith("mfg.checkpoint.")}


def _asset_cpu_s(instance: dg.DagsterInstance, run_id: str) -> float:
    """CPU seconds of the challenger's own body (``cost/cpu_s``): no interpreter start or
    imports, whose cost does not change with the epochs trained."""
    (event,) = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    return event.event_log_entry.asset_materialization.metadata[CPU_S].value


def _holdout(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    (event,) = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    meta = event.event_log_entry.asset_materialization.metadata
    return {k.removeprefix("holdout/"): v.value for k, v in meta.items()
            if k.startswith("holdout/")}


@pytest.mark.integration
@pytest.mark.slow
def test_killed_training_run_resumes_from_its_checkpoint_on_retry(data_dir, tmp_path,
                                                                   monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MFG_MLFLOW_ARTIFACTS", raising=False)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "MFG_DATA_DIR": str(data_dir)}
    silver = simulate_silver(RUN)
    windows = features.sensor_windows(silver["silver.sensor_readings"],
                                      silver["silver.fault_labels"])
    Lake(str(data_dir / "lake"), {}).overwrite(table("features.sensor_windows"), windows)
    types = windows.get_column("machine_type").n_unique()
    total = types * EPOCHS
    instance = dg.DagsterInstance.from_config(str(home))
    registry = ModelRegistry()

    # 1. an uninterrupted run: the reference metric and the time of a full restart
    started, cpu = time.monotonic(), _cpu_s()
    _finish(_launch(env, "fresh"))
    full_s, full_cpu = time.monotonic() - started, _cpu_s() - cpu
    (reference,) = instance.get_runs()
    baseline = _holdout(instance, reference.run_id)
    assert _saved_epochs(registry) == {}  # its checkpoints went with its success

    # 2. the same work, killed with SIGKILL once two thirds of its epochs are checkpointed
    started, cpu = time.monotonic(), _cpu_s()
    proc = _launch(env, "fresh")
    saved: dict[str, int] = {}
    while sum(saved.values()) < total * 2 / 3:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() - started < 240, f"no checkpoints after 240 s: {saved}"
        time.sleep(0.2)
        saved = _saved_epochs(registry)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # the checkpoints live in the lakehouse's MLflow artifact store, not ./mlruns of the cwd
    where = registry.client.get_experiment_by_name(checkpoint.EXPERIMENT).artifact_location
    assert where == f"{registry.artifact_root}/{checkpoint.EXPERIMENT}"
    killed_s, killed_cpu = time.monotonic() - started, _cpu_s() - cpu
    (killed,) = [r for r in instance.get_runs() if r.run_id != reference.run_id]
    assert killed.status == dg.DagsterRunStatus.STARTED  # nothing of its own reported the end
    # what run monitoring records for a worker that is gone; then the daemon's decision
    instance.report_run_failed(killed, "run worker gone (kill -9)", JobFailureData(
        error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION))
    assert should_retry(instance.get_run_by_id(killed.run_id), instance)

    # 3. the retry resumes where the killed run's checkpoints stopped
    started, cpu = time.monotonic(), _cpu_s()
    out = _finish(_launch(env, "retry", killed.run_id))
    resumed_s, resumed_cpu = time.monotonic() - started, _cpu_s() - cpu
    retry = instance.get_run_by_id(out.split("RUN ")[-1].split()[0])
    assert retry.status == dg.DagsterRunStatus.SUCCESS
    assert retry.parent_run_id == killed.run_id
    resumed_at = json.loads(retry.tags[RESUMED_TAG])
    assert resumed_at and max(resumed_at.values()) > 0
    assert set(resumed_at) <= set(saved) and all(resumed_at[u] >= saved[u] for u in resumed_at)
    logs = [e.message for e in instance.all_logs(retry.run_id)]
    assert any("resumed training from checkpoints" in m for m in logs)
    resumed = _holdout(instance, retry.run_id)
    assert resumed.keys() == baseline.keys()
    for name, value in baseline.items():  # same weights: same figures (noise allowance)
        assert resumed[name] == pytest.approx(value, abs=0.02), name
    assert _saved_epochs(registry) == {}
    full_body, resumed_body = (_asset_cpu_s(instance, reference.run_id),
                               _asset_cpu_s(instance, retry.run_id))
    print(f"\nresumed at {resumed_at} of {EPOCHS} epochs per type; "
          f"holdout {baseline} uninterrupted, {resumed} interrupted+resumed; "
          f"wall s: full {full_s:.1f}, killed after {killed_s:.1f}, resumed {resumed_s:.1f}; "
          f"CPU s: full {full_cpu:.1f}, killed {killed_cpu:.1f}, resumed {resumed_cpu:.1f}; "
          f"killed+resumed {killed_cpu + resumed_cpu:.1f} vs killed+restart "
          f"{killed_cpu + full_cpu:.1f} CPU s; training asset body: full {full_body:.1f}, "
          f"resumed {resumed_body:.1f} CPU s")
    # CPU time, not wall time (the box is shared); the asset body's, not the process's: the
    # retry re-pays the interpreter start and imports whatever it resumes. Killed + resumed
    # beats killed + restarted from zero exactly when the resumed body beats a full one.
    assert resumed_body < full_body
