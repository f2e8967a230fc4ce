"""The demo scenario through the running stack (runs in its own process, platform env).

1. `mfg demo`'s own code publishes the simulated plant to the TLS broker as the plant user;
   the two gateway replicas (not an in-process one) land it in the S3 lakehouse, and we wait
   for them through their /metrics;
2. the demo builds silver, features, models (MLflow server, artifacts in S3), signed
   per-edge bundles (S3 bundle store) and rollouts on the PostgreSQL Dagster instance;
3. the edges, subscribed since the stack started, load their assigned bundles, score what
   the plant sent and publish predictions; a short live segment follows, and we wait until
   every edge's predictions are in bronze via the gateways.
"""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass
from datetime import timedelta

import polars as pl

from mfg_assets.lake.names import BRONZE_EDGE_PREDICTIONS
from mfg_assets.stack.launch import parse_metric

HANDLED = ("mfg_gateway_messages_valid_total", "mfg_gateway_messages_invalid_total")


@dataclass
class GatewayCounts:
    handled: float
    pending: float


def gateway_counts(urls: list[str]) -> GatewayCounts:
    """Messages committed (landed or quarantined) and still pending, over all replicas."""
    handled = pending = 0.0
    for url in urls:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        handled += sum(parse_metric(text, name) or 0.0 for name in HANDLED)
        pending += parse_metric(text, "mfg_gateway_pending_messages") or 0.0
    return GatewayCounts(handled, pending)


class GatewayWaiter:
    """``wait(n)``: block until the replicas committed ``n`` more messages than at creation.

    Edge heartbeats also pass through the gateways, so the count can reach ``n`` a few
    messages early: we also require nothing pending on either replica, twice, one batch
    interval apart.
    """

    def __init__(self, urls: list[str], timeout_s: float = 900.0) -> None:
        self.urls = urls
        self.timeout_s = timeout_s
        self.baseline = gateway_counts(urls).handled

    def __call__(self, published: int) -> None:
        deadline = time.monotonic() + self.timeout_s
        settled = 0
        while True:
            counts = gateway_counts(self.urls)
            done = counts.handled - self.baseline
            settled = settled + 1 if done >= published and counts.pending == 0 else 0
            if settled >= 2:
                print(f"gateways committed {int(done)} messages (published {published})")
                self.baseline = counts.handled
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"gateways committed {int(done)} of {published} messages in "
                    f"{self.timeout_s:.0f}s ({counts.pending:.0f} pending)"
                )
            time.sleep(1.5)


def wait_for_predictions(edges: list[str], timeout_s: float) -> pl.DataFrame:
    """Predictions per edge and bundle in bronze.edge_predictions, once every edge has some."""
    from mfg_assets.lake.delta import Lake
    from mfg_assets.lake.registry import table

    lake = Lake()
    spec = table(BRONZE_EDGE_PREDICTIONS)
    deadline = time.monotonic() + timeout_s
    while True:
        if lake.exists(spec):
            frame = predictions_by_edge(lake)
            if set(edges) <= set(frame["edge_id"].to_list()):
                return frame
        if time.monotonic() > deadline:
            seen = predictions_by_edge(lake)["edge_id"].to_list() if lake.exists(spec) else []
            raise TimeoutError(f"no predictions from {sorted(set(edges) - set(seen))} in bronze "
                               f"after {timeout_s:.0f}s")
        time.sleep(3)


def predictions_by_edge(lake) -> pl.DataFrame:
    from mfg_assets.lake.registry import table

    frame = lake.scan(table(BRONZE_EDGE_PREDICTIONS)).collect()
    payload = pl.col("payload").str.json_path_match("$.bundleId").alias("bundle_id")
    return (
        frame.with_columns(payload)
        .group_by(pl.col("asset_id").alias("edge_id"), "bundle_id", "source")
        .agg(pl.len().alias("predictions"))
        .sort("edge_id", "source")
    )


STACK_FAMILIES = ("sensor_anomaly", "vision_defect")


def run_scenario(
    hours: float,
    seed: int,
    live_hours: float,
    edges: list[str],
    fault_rate: float | None = None,
    sources: list[str] | None = None,
    timeout_s: float = 900.0,
) -> int:
    from mfg_assets.demo import run_demo
    from mfg_assets.edge.store import BundleStore
    from mfg_assets.settings import get_settings
    from mfg_assets.sim import SimConfig, publish

    started = time.perf_counter()
    settings = get_settings()
    urls = list(settings.stack.gateway_metrics)
    if not urls:
        raise RuntimeError("MFG_STACK_GATEWAY_METRICS is not set: run the scenario through "
                           "`python -m mfg_assets.stack scenario`, which sets it")
    broker_url = settings.broker_url
    waiter = GatewayWaiter(urls, timeout_s)
    options: dict = {}
    if fault_rate is not None:
        options["fault_rate_per_day"] = fault_rate
    if sources:
        options["sources"] = tuple(sources)
    config = SimConfig(duration_h=hours, seed=seed, **options)
    # The stack's edges are line and camera edges: train what they serve, and leave the
    # demo's own private broker and edges out (the stack runs its own).
    run_demo(config, broker_url=broker_url, with_models=True, wait_landed=waiter,
             families=STACK_FAMILIES, live=False)
    demo_s = time.perf_counter() - started

    store = BundleStore()
    assigned = {edge: store.assignment(edge) for edge in edges}
    missing = sorted(edge for edge, a in assigned.items() if a is None)
    if missing:
        print(f"no bundle assigned to {', '.join(missing)} (see the gate decisions above)")
        return 1
    for edge, assignment in sorted(assigned.items()):
        print(f"  {edge} -> {assignment.bundle_id}")
    if live_hours > 0:
        live = SimConfig(duration_h=live_hours, seed=seed + 1,
                         start=config.start + timedelta(hours=hours), **options)
        counts = publish(live, broker_url, client_id=f"mfg-sim-live-{seed}")
        print(f"live segment: published {counts['total']} UNS messages")
        waiter(counts["total"])
    # edges score as soon as their bundle is active: minutes at most, not the landing budget
    frame = wait_for_predictions(edges, min(timeout_s, 300.0))
    with pl.Config(tbl_rows=30, tbl_cols=-1, fmt_str_lengths=60):
        print("edge predictions in bronze (via the gateways):")
        print(frame)
    print(f"scenario done: demo {demo_s:.1f}s, total {time.perf_counter() - started:.1f}s")
    return 0
