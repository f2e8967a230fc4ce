"""Gateway configuration: broker, subscriptions, batching and flow control."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from mfg_assets.settings import get_settings
from mfg_assets.uns.broker import BrokerAddress, TlsOptions, parse_broker_url
from mfg_assets.uns.topics import check_segment

__all__ = ["DEFAULT_TOPICS", "BrokerAddress", "GatewayConfig", "TlsOptions", "parse_broker_url"]

# Everything under the plant's enterprise, at any depth, and all of Sparkplug: a message on
# a topic of the wrong depth must reach the router (and quarantine as ``unknown_topic``)
# rather than never be seen. ``{enterprise}`` is filled in by :meth:`subscriptions`.
DEFAULT_TOPICS = ("{enterprise}/#", "spBv1.0/#")
DEFAULT_SESSION_EXPIRY_S = 3600  # 1 h (was 24 h: a dead replica held its share a day)


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
    # How long the broker keeps this replica's session (and queues its share of the shared
    # subscription) while it is offline. It bounds how long a dead replica can hold back
    # data, and it is NOT a loss-free wait: at expiry mosquitto discards what it queued for
    # the session. So: >= the restart objective (supervisor: seconds; k8s: <= 5 min
    # CrashLoopBackOff) plus time to act on the alert; a replica removed for good is drained
    # (deploy/README.md, "Gateway replicas").
    session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S
    keepalive_s: int = 30
    metrics_port: int | None = 9108
    # 0.0.0.0 in a container (MFG_METRICS_HOST), for the Prometheus scraper; the CLI has no flag
    metrics_host: str = field(
        default_factory=lambda: get_settings().metrics_host
    )
    tls: TlsOptions = field(default_factory=TlsOptions.from_env)
    rebirth_min_interval_s: float = 5.0
    # > 0: route and commit in this many worker processes, partitioned by Sparkplug edge
    # node / topic (see mfg_assets.gateway.workers); 0: in the receiving process.
    workers: int = 0
    # A failed Delta write is retried this often (backoff doubling from write_backoff_s),
    # then its messages are quarantined as write_failed and acknowledged.
    write_retries: int = 5
    write_backoff_s: float = 0.5

    @property
    def broker(self) -> BrokerAddress:
        return parse_broker_url(self.broker_url)

    def subscriptions(self, enterprise: str = "acme") -> list[str]:
        """The topic filters to subscribe; JSON UNS filters shared across the group.

        Sparkplug filters are never shared: a broker deals a shared subscription's messages
        out one by one, so one replica would see a node's NBIRTH and another its NDATA
        (unknown aliases, seq gaps, rebirth storms). Every replica is then a Sparkplug host
        application of its own and sees each node's whole stream; the same message lands
        once per replica in bronze and silver's dedupe key keeps one. Scale Sparkplug out
        with --workers (partitioned by edge node) instead.
        """
        topics = [
            topic.replace("{enterprise}", check_segment("enterprise", enterprise))
            for topic in self.topics
        ]
        if not self.share_group:
            return topics
        return [
            topic if is_sparkplug_filter(topic) else f"$share/{self.share_group}/{topic}"
            for topic in topics
        ]


def is_sparkplug_filter(topic: str) -> bool:
    """A filter that can match Sparkplug topics (``spBv1.0/...``, or everything)."""
    return topic == "#" or topic.split("/", 1)[0] == "spBv1.0"
