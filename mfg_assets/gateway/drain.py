"""Drain the broker session of a gateway replica that is removed for good.

mosquitto keeps a replica's persistent session a member of the shared subscription while it
is offline, and deals it its share of the traffic until the session expires; then it drops
what it queued. Scaling down (a StatefulSet from 2 to 1, a stack with one gateway fewer)
therefore needs one last run under the removed replica's client id:

1. resume its session (clean start off): the broker delivers what it queued for it;
2. unsubscribe: from the UNSUBACK on, the broker deals it nothing new;
3. land and acknowledge everything received, until it has been idle a while;
4. reconnect once with clean start and session expiry 0: the now empty session is gone.
"""

from __future__ import annotations

import logging
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mfg_assets.gateway.config import GatewayConfig
from mfg_assets.gateway.service import Gateway
from mfg_assets.lake.delta import Lake
from mfg_assets.uns.broker import configure_client
from mfg_assets.uns.contract import Contract

log = logging.getLogger("mfg.gateway.drain")


def drain(
    config: GatewayConfig,
    contract: Contract,
    lake: Lake,
    enterprise: str = "acme",
    idle_s: float = 5.0,
    timeout_s: float = 600.0,
) -> int:
    """Land what the broker holds for ``config.client_id``, then end its session.

    Returns the number of messages landed (or quarantined) from the session.
    """
    gateway = Gateway(config, contract, lake, enterprise)
    unsubscribed = threading.Event()
    gateway.client.on_unsubscribe = lambda *args: unsubscribed.set()
    gateway.start()
    try:
        gateway.wait_online(60)
        gateway.client.unsubscribe(config.subscriptions())
        if not unsubscribed.wait(30):
            raise TimeoutError(f"the broker did not confirm unsubscribing {config.client_id}")
        deadline = time.monotonic() + timeout_s
        last, since = gateway.handled(), time.monotonic()
        while time.monotonic() - since < idle_s:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{config.client_id} still receiving after {timeout_s}s")
            time.sleep(0.25)
            if gateway.handled() != last:
                last, since = gateway.handled(), time.monotonic()
    finally:
        gateway.stop()  # flushes and acknowledges what was received
    end_session(config)
    log.info("drained %s: %d messages landed, session ended", config.client_id, last)
    return last


def end_session(config: GatewayConfig) -> None:
    """Connect with clean start and session expiry 0: the broker forgets the session."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=config.client_id, protocol=mqtt.MQTTv5)
    configure_client(client, config.broker, config.tls)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    broker = config.broker
    client.connect(broker.host, broker.port, clean_start=True, properties=props)
    client.loop_start()
    try:
        deadline = time.monotonic() + 30
        while not client.is_connected():
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not connect as {config.client_id} to end its session")
            time.sleep(0.05)
    finally:
        client.disconnect()
        client.loop_stop()
