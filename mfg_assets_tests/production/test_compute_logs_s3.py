"""Run logs that outlive the run's process: deploy/local/dagster.yaml's S3ComputeLogManager.

On Kubernetes a run is a pod; its local files die with it. A run here executes in a child
process (`dagster asset materialize`, the multiprocess executor: one more process per step)
against the deploy instance (PostgreSQL + compute logs in SeaweedFS, with the S3 identity
`make stack` gives Dagster). Once that process has exited, its local log folder is deleted,
and the step's stdout and stderr are read back through the instance's compute log manager
(what the UI's log viewer calls) and through the download link the UI offers.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import urllib.request
import uuid
from pathlib import Path

import dagster as dg
import pytest
from botocore.exceptions import ClientError

from mfg_assets.stack.launch import COMPUTE_LOG_BUCKET
from mfg_assets_tests.s3 import SeaweedS3

pytestmark = pytest.mark.integration

CODE = """
import sys

import dagster as dg


@dg.asset
def noisy(context: dg.AssetExecutionContext) -> None:
    print("{out}")
    print("{err}", file=sys.stderr)
    context.log.info("structured log line")
"""


def _materialize_in_child(tmp_path: Path, out: str, err: str) -> subprocess.CompletedProcess:
    code = tmp_path / "noisy_defs.py"
    code.write_text(textwrap.dedent(CODE.format(out=out, err=err)))
    dagster = Path(sys.executable).parent / "dagster"
    return subprocess.run(
        [str(dagster), "asset", "materialize", "-f", str(code), "--select", "noisy"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )


def test_step_stdout_and_stderr_are_read_back_from_s3_after_the_run_process_is_gone(
    deploy_instance_env: dict[str, str], s3: SeaweedS3, tmp_path: Path
):
    out, err = f"stdout-{uuid.uuid4().hex}", f"stderr-{uuid.uuid4().hex}"
    done = _materialize_in_child(tmp_path, out, err)  # returns once the process has exited
    assert done.returncode == 0, done.stderr[-3000:]

    with dg.DagsterInstance.get() as instance:
        manager = instance.compute_log_manager
        assert type(manager).__name__ == "S3ComputeLogManager"
        (run,) = instance.get_runs()
        assert run.is_success
        captured = [
            e.dagster_event.logs_captured_data
            for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.LOGS_CAPTURED)
        ]
        assert captured, "the run captured no compute logs"
        # the UI's log viewer asks for [run id, "compute_logs", file key]
        log_key = manager.build_log_key_for_run(run.run_id, captured[0].file_key)

        # Nothing of the run on this machine's disk any more (the pod is gone).
        local = Path(manager.local_manager._base_dir) / run.run_id
        shutil.rmtree(local, ignore_errors=True)
        assert not local.exists()

        # The objects are in the bucket, under the configured prefix.
        prefix = deploy_instance_env["DAGSTER_COMPUTE_LOG_PREFIX"]
        listed = s3.client("stack-platform").list_objects_v2(
            Bucket=COMPUTE_LOG_BUCKET, Prefix=f"{prefix}/storage/{run.run_id}/")
        keys = {o["Key"] for o in listed.get("Contents", [])}
        assert any(k.endswith(".out") for k in keys) and any(k.endswith(".err") for k in keys)

        # What the UI reads: the compute log manager's API, fed from S3.
        data = manager.get_log_data(log_key)
        assert data.stdout is not None and out in data.stdout.decode()
        assert data.stderr is not None and err in data.stderr.decode()
        assert "structured log line" in data.stderr.decode()
        assert out not in data.stderr.decode() and err not in data.stdout.decode()

        # The UI's download link: a presigned URL, path-style on the custom endpoint
        # (http://host:port/bucket/key; a virtual-host URL would need bucket.127.0.0.1).
        metadata = manager.get_log_metadata(log_key)
        url = metadata.stdout_download_url
        assert url.startswith(f"{s3.endpoint}/{COMPUTE_LOG_BUCKET}/{prefix}/"), url
        with urllib.request.urlopen(url, timeout=10) as response:
            assert out in response.read().decode()


def test_only_dagsters_identity_may_write_the_log_bucket(s3: SeaweedS3):
    """`make stack`'s scopes: the platform identity (Dagster's runs) writes and reads logs;
    the gateway's, scoped to the lake, is refused by the server."""
    key = f"scope-check/{uuid.uuid4().hex}.out"
    platform = s3.client("stack-platform")
    platform.put_object(Bucket=COMPUTE_LOG_BUCKET, Key=key, Body=b"ok")
    assert platform.get_object(Bucket=COMPUTE_LOG_BUCKET, Key=key)["Body"].read() == b"ok"
    gateway = s3.client("stack-gateway")
    with pytest.raises(ClientError) as refused:
        gateway.put_object(Bucket=COMPUTE_LOG_BUCKET, Key=key + ".x", Body=b"no")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError):
        gateway.get_object(Bucket=COMPUTE_LOG_BUCKET, Key=key)
