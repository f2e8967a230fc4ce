"""A run's stdout/stderr are readable from the UI after the run's process (pod) is gone.

The deploy instance (deploy/local/dagster.yaml: PostgreSQL, compute logs in SeaweedFS through
S3ComputeLogManager). A run executes in a child process and exits; its local compute-log
folder is deleted; only then does a real ``dagster-webserver`` start (a process of its own
on a free port, as the UI pod is), and the test asks it what the UI's log viewer asks:
the run's ``LogsCapturedEvent`` (its file key), then ``capturedLogs`` and
``capturedLogsMetadata`` for the log key ``[run id, "compute_logs", file key]`` (the
queries of the UI's CapturedLogPanel), over HTTP GraphQL.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from mfg_assets.stack.launch import COMPUTE_LOG_BUCKET
from mfg_assets_tests.production.dagster_graphql import (
    CAPTURED_LOGS,
    CAPTURED_LOGS_METADATA,
    captured_log_key,
    graphql,
)
from mfg_assets_tests.s3 import SeaweedS3

pytestmark = pytest.mark.integration

CODE = """
import sys

import dagster as dg


@dg.asset
def chatty(context: dg.AssetExecutionContext) -> None:
    print("{out}")
    print("{err}", file=sys.stderr)
    context.log.info("structured log line")


defs = dg.Definitions(assets=[chatty])
"""

RUNS = """
query Runs {
  runsOrError {
    ... on Runs { results { runId status } }
  }
}
"""

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def webserver_factory(tmp_path: Path) -> Iterator[Any]:
    """Starts ``dagster-webserver`` on the instance of the environment; stops it after."""
    started: list[subprocess.Popen] = []

    def start(code: Path) -> str:
        port = _free_port()
        log = (tmp_path / "webserver.log").open("w")
        binary = Path(sys.executable).parent / "dagster-webserver"
        proc = subprocess.Popen(
            [str(binary), "-h", "127.0.0.1", "-p", str(port), "-f", str(code)],
            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "webserver.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                    return url
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1)
        raise AssertionError("dagster-webserver did not answer within 180 s")

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the webserver and its code server
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def test_the_ui_reads_a_finished_runs_logs_from_s3_after_its_process_is_gone(
    deploy_instance_env: dict[str, str], s3: SeaweedS3, tmp_path: Path, webserver_factory
):
    out, err = f"stdout-{uuid.uuid4().hex}", f"stderr-{uuid.uuid4().hex}"
    code = tmp_path / "chatty_defs.py"
    code.write_text(textwrap.dedent(CODE.format(out=out, err=err)))
    dagster = Path(sys.executable).parent / "dagster"
    done = subprocess.run(  # the run's process: returns once it has exited
        [str(dagster), "asset", "materialize", "-f", str(code), "--select", "chatty"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    # The pod is gone: nothing of the run's compute logs is left on local disk (the
    # manager stages them under <local dir>/<run id>; the local dir is the system temp).
    with dg.DagsterInstance.get() as instance:
        manager = instance.compute_log_manager
        assert type(manager).__name__ == "S3ComputeLogManager"
        (run,) = instance.get_runs()
        run_id = run.run_id
        local = Path(manager.local_manager._base_dir) / run_id
    assert local.is_dir()  # staged here while the run was alive
    shutil.rmtree(local)

    url = webserver_factory(code)  # a UI process that never saw the run
    runs = graphql(url, RUNS)["runsOrError"]["results"]
    assert [(r["runId"], r["status"]) for r in runs] == [(run_id, "SUCCESS")]
    log_key = captured_log_key(url, run_id)
    assert log_key, "the run captured no compute logs"

    logs = graphql(url, CAPTURED_LOGS, {"logKey": log_key})["capturedLogs"]
    assert out in logs["stdout"] and err in logs["stderr"]
    assert "structured log line" in logs["stderr"]
    assert out not in logs["stderr"] and err not in logs["stdout"]

    # where the UI says the files are: the compute-log bucket, under the configured prefix
    meta = graphql(url, CAPTURED_LOGS_METADATA, {"logKey": log_key})["capturedLogsMetadata"]
    prefix = deploy_instance_env["DAGSTER_COMPUTE_LOG_PREFIX"]
    for stream in ("stdout", "stderr"):
        assert meta[f"{stream}DownloadUrl"].startswith(
            f"{s3.endpoint}/{COMPUTE_LOG_BUCKET}/{prefix}/"), meta
        assert f"{COMPUTE_LOG_BUCKET}/{prefix}/" in meta[f"{stream}Location"], meta
