"""deploy/k8s/values.yaml: a preempted run on Kubernetes is noticed and retried.

No helm here: ``chart_instance_yaml`` writes the ``run_monitoring`` / ``run_retries`` blocks
of the instance ConfigMap the way the Dagster chart's ``configmap-instance.yaml`` template
does (1.13: keys under ``dagsterDaemon.runMonitoring`` / ``dagsterDaemon.runRetries``,
camelCase -> snake_case, optional keys left out when unset). A real ``DagsterInstance`` then
loads that dagster.yaml (Dagster's own schema check) and says what the cluster would do; it
must do what the other instance configs (``dagster.yaml``, ``deploy/local/dagster.yaml``) do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import yaml

ROOT = Path(__file__).resolve().parents[2]
VALUES = ROOT / "deploy" / "k8s" / "values.yaml"
INSTANCES = (ROOT / "dagster.yaml", ROOT / "deploy" / "local" / "dagster.yaml")


def chart_instance_yaml(values: dict[str, Any]) -> dict[str, Any]:
    """The chart's rendering of the daemon's run monitoring and run retries settings."""
    daemon = values.get("dagsterDaemon", {})
    out: dict[str, Any] = {}
    if not daemon.get("enabled"):
        return out
    monitoring = daemon.get("runMonitoring", {})
    if monitoring.get("enabled"):
        block = {"enabled": monitoring["enabled"],
                 "start_timeout_seconds": monitoring.get("startTimeoutSeconds"),
                 "poll_interval_seconds": monitoring.get("pollIntervalSeconds"),
                 "free_slots_after_run_end_seconds": monitoring.get(
                     "freeSlotsAfterRunEndSeconds")}
        for key, name in (("cancelTimeoutSeconds", "cancel_timeout_seconds"),
                          ("maxResumeRunAttempts", "max_resume_run_attempts")):
            if monitoring.get(key) is not None:
                block[name] = monitoring[key]
        out["run_monitoring"] = block
    retries = daemon.get("runRetries", {})
    if retries.get("enabled"):
        out["run_retries"] = {"enabled": True}
        if retries.get("maxRetries"):
            out["run_retries"]["max_retries"] = retries["maxRetries"]
    return out


def _instance(home: Path, config: dict[str, Any]) -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return dg.DagsterInstance.from_config(str(home))


def test_the_cluster_retries_a_failed_run_once_like_every_other_instance(tmp_path):
    rendered = chart_instance_yaml(yaml.safe_load(VALUES.read_text()))
    with _instance(tmp_path / "k8s", rendered) as k8s:
        assert k8s.run_retries_enabled and k8s.run_retries_max_retries == 1
        assert k8s.run_retries_retry_on_asset_or_op_failure  # Preempted is a step failure
        for path in INSTANCES:
            retries = yaml.safe_load(path.read_text())["run_retries"]
            with _instance(tmp_path / path.parent.name, {"run_retries": retries}) as other:
                assert (other.run_retries_enabled, other.run_retries_max_retries) == (
                    k8s.run_retries_enabled, k8s.run_retries_max_retries), path


def test_run_monitoring_waits_for_a_spot_node_and_fails_lost_runs(tmp_path):
    rendered = chart_instance_yaml(yaml.safe_load(VALUES.read_text()))
    with _instance(tmp_path / "k8s", rendered) as k8s:
        assert k8s.run_monitoring_enabled  # a pod gone with its node: the run is failed
        # a new spot node plus the image pull take minutes; the default (180 s) would fail
        # runs still waiting for capacity and spend their one retry
        assert k8s.run_monitoring_start_timeout_seconds >= 600
        # a preempted pod's grace period (<= 2 min) to save its checkpoint fits
        assert k8s.run_monitoring_cancel_timeout_seconds >= 120
        # a lost worker fails the run (then run retries); it is not resumed in place
        assert k8s.run_monitoring_max_resume_run_attempts == 0
        assert k8s.run_monitoring_settings["poll_interval_seconds"] <= 120


def test_the_rendering_leaves_out_what_the_chart_leaves_out():
    # the chart writes no run_retries/run_monitoring block when disabled or without a daemon
    values = {"dagsterDaemon": {"enabled": True, "runMonitoring": {"enabled": False},
                                "runRetries": {"enabled": True, "maxRetries": 0}}}
    assert chart_instance_yaml(values) == {"run_retries": {"enabled": True}}
    assert chart_instance_yaml({"dagsterDaemon": {"enabled": False,
                                                  "runRetries": {"enabled": True}}}) == {}
