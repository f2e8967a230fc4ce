"""The lakehouse and the bundle store on a real S3 server (SeaweedFS), switched by env vars only.

Commit coordination: delta-rs (>= 1.0) commits a Delta log entry with a conditional PUT
(``If-None-Match: *``, object_store ``conditional_put=etag``, on by default for S3), so two
writers racing for version N cannot both win: the loser re-reads the log and retries at N+1.
That needs an S3 server that honours conditional writes atomically; SeaweedFS does (the
first test checks it directly), as do AWS S3 (since 2024), MinIO and R2. No DynamoDB lock,
and never ``AWS_S3_ALLOW_UNSAFE_RENAME``.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from datetime import date
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from mfg_assets.edge.bundle import build_bundle, verify_bundle
from mfg_assets.edge.signing import generate_keypair, load_private_key, load_public_key
from mfg_assets.edge.store import BundleStore
from mfg_assets.lake.catalog import connect
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import table
from mfg_assets.settings import get_settings
from mfg_assets_tests.lake.test_delta import params_frame
from mfg_assets_tests.production.conftest import LAKE_BUCKET
from mfg_assets_tests.s3 import SeaweedS3

pytestmark = pytest.mark.integration

PARAMS = table("silver.process_parameters")
DAY1, DAY2 = date(2026, 11, 1), date(2026, 11, 2)


def test_s3_server_honours_conditional_put_under_a_race(s3: SeaweedS3):
    """The property delta-rs relies on: of 16 simultaneous create-if-absent PUTs, one wins."""
    client = s3.client("platform")
    key = f"race/{threading.get_ident()}-{id(client)}"
    barrier = threading.Barrier(16)
    wins: list[int] = []
    refusals: list[str] = []

    def put(i: int) -> None:
        barrier.wait()
        try:
            client.put_object(Bucket=LAKE_BUCKET, Key=key, Body=str(i).encode(), IfNoneMatch="*")
            wins.append(i)
        except ClientError as exc:
            refusals.append(exc.response["Error"]["Code"])

    threads = [threading.Thread(target=put, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1, wins
    assert set(refusals) <= {"PreconditionFailed", "ConditionalRequestConflict"}
    body = client.get_object(Bucket=LAKE_BUCKET, Key=key)["Body"].read()
    assert body == str(wins[0]).encode()


def test_settings_switch_the_lake_to_s3_by_environment_only(s3_env: dict[str, str]):
    settings = get_settings()
    assert settings.is_remote_lake
    assert settings.lake_uri == s3_env["MFG_LAKE_URI"]
    assert settings.storage_options["aws_endpoint_url"] == s3_env["AWS_ENDPOINT_URL"]
    lake = Lake()  # no argument: what every asset and the gateway construct
    assert lake.root.startswith("s3://")
    assert lake.storage_options == settings.storage_options


def test_lake_append_partition_overwrite_and_read_on_s3(s3_env: dict[str, str]):
    lake = Lake()
    first = lake.append(PARAMS, params_frame(DAY1, ["a1", "a2"]))
    second = lake.append(PARAMS, params_frame(DAY2, ["b1"]))
    assert (first.version, second.version) == (0, 1)
    for _ in range(2):  # idempotent re-materialization of one day
        lake.overwrite_partition(PARAMS, params_frame(DAY1, ["a3"], 7.0), DAY1)
    assert lake.read_partition(PARAMS, DAY1).get_column("unit_id").to_list() == ["a3"]
    assert lake.read_partition(PARAMS, DAY2).get_column("unit_id").to_list() == ["b1"]
    assert lake.row_count(PARAMS) == 2
    assert sorted(lake.read(PARAMS).get_column("unit_id").to_list()) == ["a3", "b1"]
    # time travel still reads the first snapshot from the object store
    assert sorted(lake.read(PARAMS, version=0).get_column("unit_id").to_list()) == ["a1", "a2"]
    objects = s3_objects(lake)
    assert any(key.endswith("_delta_log/00000000000000000000.json") for key in objects)
    assert any("/date=2026-11-02/" in key for key in objects)


def test_duckdb_catalog_reads_tables_on_s3(s3_env: dict[str, str]):
    lake = Lake()
    lake.append(PARAMS, params_frame(DAY1, ["u1", "u2", "u3"], 2.5))
    con = connect(lake)
    total, units = con.execute(
        "SELECT sum(value), count(DISTINCT unit_id) FROM silver.process_parameters"
    ).fetchone()
    assert (total, units) == (7.5, 3)


def _append_worker(root: str, options: dict[str, str], writer: int, commits: int, barrier, out):
    # A separate process per writer, like gateway replicas: no shared client, no shared lock.
    lake = Lake(root, options)
    barrier.wait()
    versions = []
    for k in range(commits):
        frame = params_frame(DAY1, [f"w{writer}-{k}"], float(writer))
        versions.append(lake.append(PARAMS, frame, writer=str(writer)).version)
    out.put((writer, versions))


def test_concurrent_writers_on_s3_lose_no_commit(s3: SeaweedS3, s3_env: dict[str, str]):
    root, options = s3_env["MFG_LAKE_URI"], s3.storage_options("platform")
    lake = Lake(root, options)
    lake.ensure(PARAMS)  # version 0; the race is for versions 1..n
    writers, commits = 4, 3
    ctx = mp.get_context("spawn")  # no forked tokio runtime or S3 client state
    barrier, out = ctx.Barrier(writers), ctx.Queue()
    procs = [
        ctx.Process(target=_append_worker, args=(root, options, w, commits, barrier, out))
        for w in range(writers)
    ]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=90) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    reported = sorted(v for versions in results.values() for v in versions)
    # every commit landed, each at its own version, and each writer was told the right one
    assert reported == list(range(1, writers * commits + 1))
    assert lake.version(PARAMS) == writers * commits
    rows = lake.read(PARAMS)
    assert rows.height == writers * commits
    assert sorted(rows.get_column("unit_id").to_list()) == sorted(
        f"w{w}-{k}" for w in range(writers) for k in range(commits)
    )
    history = {c["version"]: c.get("writer") for c in lake.table(PARAMS).history()}
    for writer, versions in results.items():
        assert all(history[v] == str(writer) for v in versions)


def test_bundle_store_round_trip_on_s3(
    s3: SeaweedS3, s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    private, public = generate_keypair(tmp_path / "keys")
    bundle = make_bundle(tmp_path / "build" / "b", private)
    store = BundleStore()  # from MFG_BUNDLE_STORE
    assert store.uri.startswith("s3://")
    bundle_id = store.publish(bundle)
    store.assign("edge-cam01", bundle_id, reason="s3 test")
    assert store.bundles() == [bundle_id] and store.has(bundle_id)
    assert store.assignment("edge-cam01").bundle_id == bundle_id

    # The edge reads with its own read-only credentials and verifies with the public key.
    edge_store = _edge_store(s3, monkeypatch)
    assert edge_store.assignment("edge-cam01").bundle_id == bundle_id
    fetched = edge_store.fetch(bundle_id, tmp_path / "edge-cache")
    verified = verify_bundle(fetched, load_public_key(public))
    assert verified.bundle_id == bundle_id
    assert (fetched / "model.onnx").read_bytes() == (bundle / "model.onnx").read_bytes()
    # ...and may not publish or reassign: a stolen edge credential cannot plant a bundle.
    with pytest.raises(OSError, match="(?i)access ?denied|forbidden|403"):
        edge_store.assign("edge-cam01", bundle_id, by="edge")


def _edge_store(s3: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> BundleStore:
    # The edge's own AWS_* variables, as its Deployment sets them: configuration only.
    for name, value in s3.env("edge").items():
        monkeypatch.setenv(name, value)
    return BundleStore()


def make_bundle(out: Path, private_key: Path) -> Path:
    model = out.parent / "model.bin"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(b"not really onnx, checksummed all the same" * 100)
    build_bundle(
        out,
        edge_id="edge-cam01",
        model_file=model,
        preprocessing={"kind": "image", "input": {"size": 64}},
        threshold={"value": 0.5},
        model_name="vision",
        model_version=1,
        private_key=load_private_key(private_key),
    )
    return out


def s3_objects(lake: Lake) -> list[str]:
    bucket, _, prefix = lake.root.removeprefix("s3://").partition("/")
    assert bucket == LAKE_BUCKET
    import boto3

    opts = lake.storage_options or {}
    client = boto3.client(
        "s3",
        endpoint_url=opts["aws_endpoint_url"],
        aws_access_key_id=opts["aws_access_key_id"],
        aws_secret_access_key=opts["aws_secret_access_key"],
        region_name=opts["aws_region"],
    )
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]
