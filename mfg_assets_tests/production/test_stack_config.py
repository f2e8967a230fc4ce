"""The stack's generated configuration, without starting anything (fast)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mfg_assets.cli import _sim_device
from mfg_assets.stack import broker
from mfg_assets.stack.launch import DEPLOY, Stack, StackConfig, parse_metric
from mfg_assets.stack.secrets import StackSecrets


def _blocks(acl: str) -> dict[str, list[str]]:
    blocks: dict[str, list[str]] = {}
    user = None
    for line in acl.splitlines():
        if line.startswith("user "):
            user = line.split()[1]
            blocks[user] = []
        elif line.startswith("topic ") and user:
            blocks[user].append(line)
    return blocks


def test_acl_gives_each_edge_only_its_own_subtree_and_inputs():
    devices = [_sim_device("edge-cam01"), _sim_device("edge-weld1")]
    blocks = _blocks(broker.acl_text("acme", devices))
    assert set(blocks) == {"gateway", "plant", "edge-cam01", "edge-weld1"}
    cam = blocks["edge-cam01"]
    writes = [line for line in cam if line.startswith("topic write")]
    assert writes == [f"topic write {'/'.join(devices[0].place.values())}/edge-cam01/#"]
    assert sorted(line.removeprefix("topic read ") for line in cam if "read" in line) == sorted(
        devices[0].sources
    )
    assert not any("edge-cam01" in line for line in blocks["edge-weld1"])
    # the gateway block is the one deploy/broker/acl ships
    shipped = _blocks((DEPLOY / "broker" / "acl").read_text())
    assert blocks["gateway"] == shipped["gateway"] and blocks["plant"] == shipped["plant"]


def test_mosquitto_conf_is_the_deploy_config_with_local_paths(tmp_path: Path):
    pki = (tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key")
    conf = broker.mosquitto_conf(DEPLOY / "broker" / "mosquitto.conf", 18883, pki, tmp_path)
    assert "listener 18883 127.0.0.1" in conf
    assert "allow_anonymous false" in conf and "tls_version tlsv1.2" in conf
    assert f"acl_file {tmp_path / 'acl'}" in conf and "/mosquitto/" not in conf


def test_mosquitto_conf_refuses_a_template_it_does_not_understand(tmp_path: Path):
    template = tmp_path / "other.conf"
    template.write_text("listener 1883\nallow_anonymous true\n")
    with pytest.raises(ValueError, match="no longer contains"):
        broker.mosquitto_conf(template, 1, (tmp_path,) * 3, tmp_path)


def test_secrets_are_private_and_reused(tmp_path: Path):
    first = StackSecrets.load_or_create(tmp_path, ["gateway"], ["edge"], ["mfg_mlflow"])
    assert stat.S_IMODE(first.file.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.signing_key.stat().st_mode) == 0o600
    again = StackSecrets.load_or_create(tmp_path, ["gateway", "edge-cam01"], ["edge"],
                                        ["mfg_mlflow"])
    assert again.broker["gateway"] == first.broker["gateway"]  # kept: stored data stays readable
    assert again.s3["edge"] == first.s3["edge"]
    assert again.broker["edge-cam01"] not in first.broker.values()  # a new user, a new one


def test_each_component_gets_only_its_own_credentials(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-the-shell")  # never inherited
    stack = Stack(StackConfig(root=tmp_path, preferred_ports=False))
    stack._prepare()
    edge, gateway, platform = stack.edge_env("edge-cam01"), stack.gateway_env(), \
        stack.platform_env()
    assert edge["AWS_ACCESS_KEY_ID"] == stack.secrets.s3["edge"][0]
    assert gateway["AWS_ACCESS_KEY_ID"] == stack.secrets.s3["gateway"][0]
    assert "MFG_EDGE_SIGNING_KEY" not in edge and "MFG_EDGE_PUBLIC_KEY" in edge
    assert edge["MFG_BROKER_USERNAME"] == "edge-cam01"
    assert "MFG_BROKER_PASSWORD" not in platform  # Dagster does not talk MQTT
    secrets = {s for pair in stack.secrets.s3.values() for s in pair} | set(
        stack.secrets.broker.values())
    for env in (edge, gateway, platform):
        assert "from-the-shell" not in env.values()
    leaked = {v for v in edge.values() if v in secrets} - {
        *stack.secrets.s3["edge"], stack.secrets.broker["edge-cam01"]}
    assert leaked == set()


def test_parse_metric_reads_prometheus_text():
    text = "# HELP x\nmfg_gateway_connected 1.0\nmfg_gateway_pending_messages 12.0\n"
    assert parse_metric(text, "mfg_gateway_connected") == 1.0
    assert parse_metric(text, "mfg_gateway_pending_messages") == 12.0
    assert parse_metric(text, "absent") is None
