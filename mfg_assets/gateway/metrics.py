"""Prometheus metrics of one gateway process (own registry: tests run several in one process)."""

from __future__ import annotations

from dataclasses import dataclass, field

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


@dataclass
class GatewayMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.received = Counter("mfg_gateway_messages_received", "Messages received", registry=r)
        self.valid = Counter("mfg_gateway_messages_valid", "Messages landed in bronze", registry=r)
        self.invalid = Counter("mfg_gateway_messages_invalid", "Messages quarantined", registry=r)
        self.batches = Counter(
            "mfg_gateway_batches_committed", "Delta batches committed", registry=r
        )
        self.write_failures = Counter(
            "mfg_gateway_write_failures", "Failed Delta writes", registry=r
        )
        # the alert: messages quarantined because their batch could not be written
        self.write_failed = Counter(
            "mfg_gateway_messages_write_failed",
            "Messages quarantined as write_failed after every Delta write attempt failed",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "mfg_gateway_batch_commit_seconds",
            "Time to route and commit one batch",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
            registry=r,
        )
        self.lag_seconds = Histogram(
            "mfg_gateway_receive_to_commit_seconds",
            "Receive-to-commit latency per message",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10),
            registry=r,
        )
        self.pending = Gauge(
            "mfg_gateway_pending_messages", "Received, not yet committed", registry=r
        )
        self.connected = Gauge(
            "mfg_gateway_connected", "1 while connected to the broker", registry=r
        )
        self.rss_bytes = Gauge("mfg_gateway_rss_bytes", "Resident memory", registry=r)
        self.rss_bytes.set_function(lambda: psutil.Process().memory_info().rss)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)
