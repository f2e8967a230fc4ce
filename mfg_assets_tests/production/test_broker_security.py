"""The gateway against a production-shaped broker: TLS (private CA), passwords and ACLs.

The broker is a private mosquitto; the ACL is the one deploy/ ships: the gateway reads the
whole namespace, an edge publishes only under its own id and reads only its inputs.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from mfg_assets.gateway.config import GatewayConfig, TlsOptions
from mfg_assets.gateway.service import Gateway
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import table
from mfg_assets.settings import get_settings
from mfg_assets.stack.pki import write_pki
from mfg_assets.uns.contract import load_contract
from mfg_assets_tests.brokers import Mosquitto, mosquitto_binary

pytestmark = pytest.mark.integration

EDGE_OWN = "acme/detroit/assembly/final1/inspect01/edge-cam01/telemetry"
EDGE_OTHER = "acme/detroit/assembly/final1/inspect01/edge-cam02/telemetry"
EDGE_INPUT = "acme/detroit/assembly/final1/inspect01/cam-01/inspection"
PASSWORDS = {"gateway": "gw-pass-1", "edge-cam01": "edge-pass-1"}
DEPLOY_ACL = Path(__file__).resolve().parents[2] / "deploy" / "broker" / "acl"


@pytest.fixture
def secure_broker(tmp_path: Path):
    if mosquitto_binary() is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto / mosquitto_passwd not installed: broker security tests skipped")
    workdir = tmp_path / "secure-broker"
    workdir.mkdir()
    ca, cert, key = write_pki(workdir)
    passwd, acl = workdir / "passwd", workdir / "acl"
    passwd.touch()
    for user, password in PASSWORDS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True)
    shutil.copy(DEPLOY_ACL, acl)  # the ACL we ship, not a test copy of it
    broker = Mosquitto(workdir)
    # Our own config in place of the anonymous plain-TCP default: TLS only, no anonymous.
    broker.conf.write_text(
        "\n".join(
            [
                f"listener {broker.port} 127.0.0.1",
                f"cafile {ca}",
                f"certfile {cert}",
                f"keyfile {key}",
                "tls_version tlsv1.2",
                "allow_anonymous false",
                f"password_file {passwd}",
                f"acl_file {acl}",
                "persistence false",
                *(["user root"] if _root() else []),
            ]
        )
        + "\n"
    )
    broker.start()
    yield broker, ca
    broker.stop()


def _root() -> bool:
    return os.geteuid() == 0


def _client(port: int, ca: Path, user: str, password: str) -> tuple[mqtt.Client, list]:
    """A TLS client that records its CONNACK reason code."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    client.tls_set(ca_certs=str(ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    codes: list = []
    client.on_connect = lambda c, u, f, rc, p: codes.append(rc)
    client.connect("localhost", port)
    client.loop_start()
    return client, codes


def _wait(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_gateway_over_tls_lands_only_what_the_acl_allows(
    secure_broker, data_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    broker, ca = secure_broker
    monkeypatch.setenv("MFG_BROKER_CA", str(ca))
    monkeypatch.setenv("MFG_BROKER_URL", f"mqtts://gateway:{PASSWORDS['gateway']}@localhost:1")
    config = GatewayConfig(
        broker_url=f"mqtts://gateway:{PASSWORDS['gateway']}@localhost:{broker.port}",
        metrics_port=None,
        batch_interval_s=0.2,
    )
    assert config.tls == TlsOptions(ca_file=ca)  # from MFG_BROKER_CA
    settings = get_settings()
    lake = Lake(str(data_dir / "lake"), {})
    gateway = Gateway(config, load_contract(settings.contract_path), lake)
    gateway.start()
    try:
        gateway.wait_online(20)
        edge, codes = _client(broker.port, ca, "edge-cam01", PASSWORDS["edge-cam01"])
        assert _wait(lambda: codes) and not codes[0].is_failure
        # The edge reads its input camera: the ACL lets that subscription through.
        granted = threading.Event()

        def on_subscribe(client, userdata, mid, reason_codes, properties) -> None:
            if not reason_codes[0].is_failure:
                granted.set()

        edge.on_subscribe = on_subscribe
        edge.subscribe(EDGE_INPUT, qos=1)
        assert granted.wait(10)
        # Under another edge's id the broker drops the PUBLISH: it reaches no subscriber.
        edge.publish(EDGE_OTHER, b'{"forged": true}', qos=1).wait_for_publish(10)
        edge.publish(EDGE_OWN, b'{"own": true}', qos=1).wait_for_publish(10)
        assert _wait(lambda: gateway.handled() >= 1, 20)
        time.sleep(1.0)  # room for a forged message to arrive if the ACL let it through
        assert gateway.handled() == 1
        edge.loop_stop()
        edge.disconnect()
    finally:
        gateway.stop()
    landed = {
        topic
        for name in ("bronze.quarantine", "bronze.edge_telemetry")
        if lake.exists(table(name))
        for topic in lake.read(table(name)).get_column("topic").to_list()
    }
    assert EDGE_OWN in landed and EDGE_OTHER not in landed


@pytest.mark.parametrize(
    ("user", "password"), [("gateway", "wrong-password"), ("nobody", "x"), ("", "")]
)
def test_wrong_credentials_are_refused(secure_broker, user: str, password: str):
    broker, ca = secure_broker
    client, codes = _client(broker.port, ca, user, password)
    try:
        assert _wait(lambda: codes, 10), "no CONNACK"
        assert codes[0].is_failure, codes
    finally:
        client.loop_stop()
        client.disconnect()


def test_default_trust_store_client_connects_with_ssl_cert_file(
    secure_broker, monkeypatch: pytest.MonkeyPatch
):
    """The edge runtime calls tls_set() with no CA: SSL_CERT_FILE (deploy/k8s) points the
    default trust store at the plant CA."""
    broker, ca = secure_broker
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set("edge-cam01", PASSWORDS["edge-cam01"])
    client.tls_set()  # exactly what mfg_assets.edge.runtime does
    codes: list = []
    client.on_connect = lambda c, u, f, rc, p: codes.append(rc)
    client.connect("localhost", broker.port)
    client.loop_start()
    try:
        assert _wait(lambda: codes, 10) and not codes[0].is_failure
    finally:
        client.loop_stop()
        client.disconnect()


def test_a_client_that_does_not_trust_the_ca_cannot_connect(secure_broker, tmp_path: Path):
    broker, _ = secure_broker
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.tls_set(tls_version=ssl.PROTOCOL_TLS_CLIENT)  # system CAs only
    with pytest.raises(ssl.SSLError, match="(?i)certificate verify failed"):
        client.connect("localhost", broker.port)
