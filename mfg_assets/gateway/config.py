"""Gateway configuration: broker address, credentials, TLS, batching and flow control."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

DEFAULT_TOPICS = ("+/+/+/+/+/+/+", "spBv1.0/#")


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[user:pass@]host[:port]`` or ``mqtts://...`` (TLS, default port 8883).

    Credentials may also come from MFG_BROKER_USERNAME / MFG_BROKER_PASSWORD so that they
    never have to appear on a command line.
    """
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://")
    if not parsed.hostname:
        raise ValueError(f"broker URL {url!r} has no host")
    tls = parsed.scheme in ("mqtts", "ssl")
    return BrokerAddress(
        host=parsed.hostname,
        port=parsed.port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parsed.username)
        if parsed.username
        else os.environ.get("MFG_BROKER_USERNAME"),
        password=unquote(parsed.password)
        if parsed.password
        else os.environ.get("MFG_BROKER_PASSWORD"),
    )


@dataclass(frozen=True)
class TlsOptions:
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @classmethod
    def from_env(cls) -> TlsOptions:
        def path(name: str) -> Path | None:
            value = os.environ.get(name)
            return Path(value) if value else None

        return cls(path("MFG_BROKER_CA"), path("MFG_BROKER_CERT"), path("MFG_BROKER_KEY"))


@dataclass(frozen=True)
class GatewayConfig:
    broker_url: str
    topics: tuple[str, ...] = DEFAULT_TOPICS
    # Replicas that share a group split the plant's traffic ($share/<group>/<filter>).
    share_group: str | None = "mfg-gateway"
    client_id: str = field(default_factory=lambda: f"mfg-gateway-{socket.gethostname()}")
    # A micro-batch closes after batch_interval_s or batch_max_messages, whichever is first.
    batch_interval_s: float = 1.0
    batch_max_messages: int = 5000
    # MQTT v5 Receive Maximum: the broker sends at most this many unacknowledged QoS 1
    # messages, and we acknowledge only after the Delta commit. Twice the batch size lets the
    # next batch fill while the previous one commits; equal to it, the stream would stall
    # for every commit (throughput <= batch / (interval + commit time)).
    receive_maximum: int = 10_000
    max_pending_bytes: int = 256 * 1024 * 1024  # received but uncommitted payload bytes
    session_expiry_s: int = 24 * 3600  # the broker keeps our unacked messages this long
    keepalive_s: int = 30
    metrics_port: int | None = 9108
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container, for the Prometheus scraper
    tls: TlsOptions = field(default_factory=TlsOptions.from_env)
    rebirth_min_interval_s: float = 5.0
    write_retries: int = 5

    @property
    def broker(self) -> BrokerAddress:
        return parse_broker_url(self.broker_url)

    def subscriptions(self) -> list[str]:
        if not self.share_group:
            return list(self.topics)
        return [f"$share/{self.share_group}/{topic}" for topic in self.topics]
