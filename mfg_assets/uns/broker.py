"""Broker addresses, credentials and TLS for every MQTT client of the project.

One place for ``mqtt://user:pass@host:port`` / ``mqtts://`` URLs and the MFG_BROKER_*
variables, so the gateway, the edge runtime and the simulator connect the same way.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import paho.mqtt.client as mqtt

from mfg_assets.settings import get_settings

DEFAULT_PORTS = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883, "ssl": 8883}


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[user:pass@]host[:port]`` or ``mqtts://...`` (TLS, default port 8883).

    Credentials may also come from MFG_BROKER_USERNAME / MFG_BROKER_PASSWORD so that they
    never have to appear on a command line.
    """
    parsed = urlparse(url)
    if parsed.scheme not in DEFAULT_PORTS:
        raise ValueError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://")
    if not parsed.hostname:
        raise ValueError(f"broker URL {url!r} has no host")
    tls = parsed.scheme in ("mqtts", "ssl")
    credentials = get_settings().broker
    return BrokerAddress(
        host=parsed.hostname,
        port=parsed.port or DEFAULT_PORTS[parsed.scheme],
        tls=tls,
        username=unquote(parsed.username) if parsed.username else credentials.username,
        password=unquote(parsed.password) if parsed.password else credentials.password,
    )


@dataclass(frozen=True)
class TlsOptions:
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @classmethod
    def from_env(cls) -> TlsOptions:
        """MFG_BROKER_CA / _CERT / _KEY, as settings read them now."""
        broker = get_settings().broker
        return cls(broker.ca_file, broker.cert_file, broker.key_file)


def configure_client(
    client: mqtt.Client, broker: BrokerAddress, tls: TlsOptions | None = None
) -> None:
    """Credentials and, for ``mqtts://``, TLS (a private CA from MFG_BROKER_CA, a client
    certificate from MFG_BROKER_CERT/KEY; otherwise the system trust store)."""
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls:
        tls = tls or TlsOptions.from_env()
        client.tls_set(
            ca_certs=str(tls.ca_file) if tls.ca_file else None,
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
