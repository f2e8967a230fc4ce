"""Gateway configuration: broker, subscriptions, batching and flow control."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from mfg_assets.uns.broker import BrokerAddress, TlsOptions, parse_broker_url

__all__ = ["DEFAULT_TOPICS", "BrokerAddress", "GatewayConfig", "TlsOptions", "parse_broker_url"]

DEFAULT_TOPICS = ("+/+/+/+/+/+/+", "spBv1.0/#")


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
    # 0.0.0.0 in a container (MFG_METRICS_HOST), for the Prometheus scraper; the CLI has no flag
    metrics_host: str = field(
        default_factory=lambda: os.environ.get("MFG_METRICS_HOST") or "127.0.0.1"
    )
    tls: TlsOptions = field(default_factory=TlsOptions.from_env)
    rebirth_min_interval_s: float = 5.0
    # > 0: route and commit in this many worker processes, partitioned by Sparkplug edge
    # node / topic (see mfg_assets.gateway.workers); 0: in the receiving process.
    workers: int = 0
    write_retries: int = 5

    @property
    def broker(self) -> BrokerAddress:
        return parse_broker_url(self.broker_url)

    def subscriptions(self) -> list[str]:
        """The topic filters to subscribe; JSON UNS filters shared across the group.

        Sparkplug filters are never shared: a broker deals a shared subscription's messages
        out one by one, so one replica would see a node's NBIRTH and another its NDATA
        (unknown aliases, seq gaps, rebirth storms). Every replica is then a Sparkplug host
        application of its own and sees each node's whole stream; the same message lands
        once per replica in bronze and silver's dedupe key keeps one. Scale Sparkplug out
        with --workers (partitioned by edge node) instead.
        """
        if not self.share_group:
            return list(self.topics)
        return [topic if is_sparkplug_filter(topic) else f"$share/{self.share_group}/{topic}"
                for topic in self.topics]


def is_sparkplug_filter(topic: str) -> bool:
    """A filter that can match Sparkplug topics (``spBv1.0/...``, or everything)."""
    return topic == "#" or topic.split("/", 1)[0] == "spBv1.0"
