"""Gateway throughput and latency against a bare subscriber, same broker, same run.

    python benchmarks/bench_gateway.py [--quick] [--only json|sparkplug|router]
                                       [--sparkplug-nodes 4]

(a) raw: a bare paho subscriber that only counts (QoS 1) — the rate the broker and a Python
    MQTT client manage on this machine; (b) the gateway: every message validated against
    the contract and committed to Delta before its acknowledgement. Figures: JSON msgs/s of
    both and their ratio, Sparkplug metrics/s (50 metrics per DDATA), p50/p99
    publish-to-committed latency, peak RSS of the gateway, CPU per message.

Sparkplug feeds: ``sparkplug_1node`` figures come from one edge node (one device, one seq);
``sparkplug_<N>nodes`` figures from N edge nodes (each with its own births and seq, DDATA
dealt round-robin), which ``--workers 2`` can split between its workers. ``router_*``
figures route and commit pre-encoded DDATA in this process (no MQTT): CPU per DDATA of the
worker path, robust to a busy machine.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import polars as pl
import psutil
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _report import report  # noqa: E402  (benchmarks/ is the script's folder)

from mfg_assets.lake.delta import Lake  # noqa: E402
from mfg_assets.lake.registry import table  # noqa: E402
from mfg_assets.uns import sparkplug  # noqa: E402
from mfg_assets_tests.brokers import Mosquitto  # noqa: E402

JSON_TOPIC = "acme/detroit/body/weld1/cell01/weld-01/sensors"
NODE, DEVICE, GROUP = "bench-gw", "bench-press", "detroit"
METRICS_PER_DDATA = 50
PUBLISH_WINDOW = 1000


def _client(port: int, client_id: str) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    return client


def json_messages(n: int) -> list[tuple[str, bytes]]:
    return [(JSON_TOPIC, b"") for _ in range(n)]  # payload stamped at publish time


def _payload(kind: str, k: int, now: int, nodes: int = 1) -> bytes:
    if kind == "json":
        readings = [
            {"sensor": "current", "value": 100.0 + k % 9},
            {"sensor": "voltage", "value": 20.5},
        ]
        doc = {"timestamp": now, "machineType": "welder", "seq": k, "readings": readings}
        return orjson.dumps(doc)
    metrics = [
        {"alias": i, "value": float(k + i), "datatype": "Double"} for i in range(METRICS_PER_DDATA)
    ]
    seq = (k // nodes + 2) % 256  # each node counts its own: NBIRTH 0, DBIRTH 1, DDATA 2..
    return sparkplug.encode_payload(now, seq, metrics, include_datatypes=False)


def node_name(index: int, nodes: int) -> str:
    return NODE if nodes == 1 else f"{NODE}-{index}"


def _topic(kind: str, k: int, nodes: int) -> str:
    """Message k's topic: Sparkplug DDATA are dealt round-robin over the edge nodes."""
    if kind == "json":
        return JSON_TOPIC
    return sparkplug.format_topic("DDATA", GROUP, node_name(k % nodes, nodes), DEVICE)


def publisher(
    port: int,
    kind: str,
    n: int,
    prepared: mp.Event,
    ready: mp.Event,
    rate: float | None = None,
    nodes: int = 1,
) -> None:
    """Publish n messages at QoS 1: as fast as the broker takes them (payloads encoded up
    front, so the publisher's own encoding is not what is measured: ``prepared`` is set once
    they are, and the clock starts after that), or paced at ``rate`` messages/s and stamped
    at send time (latency: under overload it only measures backlog). Sparkplug: ``nodes``
    edge nodes, each born (NBIRTH, DBIRTH) before the data."""
    client = _client(port, f"bench-pub-{kind}")
    client.loop_start()
    payloads = None
    if rate is None:
        stamp = int(time.time() * 1000)
        payloads = [_payload(kind, k, stamp, nodes) for k in range(n)]
    prepared.set()
    ready.wait()
    infos: deque[mqtt.MQTTMessageInfo] = deque()
    if kind == "sparkplug":
        for index in range(nodes):
            infos.append(client.publish(*_nbirth(node_name(index, nodes)), qos=1))
            infos.append(client.publish(*_dbirth(node_name(index, nodes)), qos=1))
    began = time.time()
    for k in range(n):
        if payloads is not None:
            payload = payloads[k]
        else:
            lag = began + k / rate - time.time()
            if lag > 0:
                time.sleep(lag)
            payload = _payload(kind, k, int(time.time() * 1000), nodes)
        infos.append(client.publish(_topic(kind, k, nodes), payload, qos=1))
        if len(infos) >= PUBLISH_WINDOW:  # keep paho's own queue bounded
            infos.popleft().wait_for_publish(timeout=120)
    for info in infos:
        info.wait_for_publish(timeout=120)
    client.loop_stop()
    client.disconnect()


def _nbirth(node: str = NODE, now: int | None = None) -> tuple[str, bytes]:
    return sparkplug.format_topic("NBIRTH", GROUP, node), sparkplug.encode_payload(
        int(time.time() * 1000) if now is None else now,
        0,
        [{"name": "bdSeq", "value": 0, "datatype": "Int64"}],
    )


def _dbirth(node: str = NODE, now: int | None = None) -> tuple[str, bytes]:
    metrics = [
        {"name": f"m{i}", "alias": i, "value": 0.0, "datatype": "Double"}
        for i in range(METRICS_PER_DDATA)
    ]
    return sparkplug.format_topic("DBIRTH", GROUP, node, DEVICE), sparkplug.encode_payload(
        int(time.time() * 1000) if now is None else now, 1, metrics
    )


def raw_subscriber(
    port: int, n: int, subscribed: mp.Event, result: mp.Queue, topic: str = JSON_TOPIC
) -> None:
    """Count QoS 1 messages (auto-ack); report first/last receive time."""
    times: list[float] = []
    done = threading.Event()

    def on_message(client, userdata, message) -> None:
        times.append(time.time())
        if len(times) >= n:
            done.set()

    client = _client(port, "bench-raw")
    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    client.subscribe(topic, qos=1)
    client.loop_start()
    done.wait(300)
    client.loop_stop()
    result.put((len(times), times[0] if times else 0.0, times[-1] if times else 0.0))


def run_raw(broker: Mosquitto, n: int, kind: str = "json") -> float:
    """Messages/s a bare subscriber receives from the same publisher (Sparkplug: DDATA only)."""
    topic = JSON_TOPIC if kind == "json" else sparkplug.format_topic("DDATA", GROUP, NODE, DEVICE)
    subscribed, prepared, ready, result = mp.Event(), mp.Event(), mp.Event(), mp.Queue()
    sub = mp.Process(target=raw_subscriber, args=(broker.port, n, subscribed, result, topic))
    sub.start()
    subscribed.wait(30)
    pub = mp.Process(target=publisher, args=(broker.port, kind, n, prepared, ready))
    pub.start()
    prepared.wait(300)
    start = time.time()
    ready.set()
    count, _, last = result.get(timeout=300)
    pub.join()
    sub.join()
    assert count == n, f"raw subscriber got {count} of {n}"
    return n / (last - start)


def run_gateway(
    broker: Mosquitto,
    kind: str,
    n: int,
    workdir: Path,
    rate: float | None = None,
    *,
    workers: int = 0,
    replicas: int = 1,
    shared: bool = False,
    nodes: int = 1,
) -> dict[str, float]:
    """Feed the gateway (``replicas`` processes on one shared subscription when > 1, each
    with ``workers`` worker processes; Sparkplug from ``nodes`` edge nodes) and measure
    rate, latency, memory and CPU."""
    name = f"{kind}-{'paced' if rate else 'flood'}-w{workers}-r{replicas}{'-s' if shared else ''}"
    name += f"-n{nodes}"
    data_dir = workdir / f"gateway-{name}"
    data_dir.mkdir()
    env = dict(os.environ, MFG_DATA_DIR=str(data_dir))
    client_ids = [f"bench-{name}-{k}" for k in range(replicas)]
    log = (data_dir / "gateway.log").open("wb")
    options = ["--metrics-port", "0", "--workers", str(workers)]
    # A group of its own per run: a stopped replica's persistent session stays a member of
    # its group (until it expires) and the broker keeps dealing it a share of the messages.
    options += ["--share-group", f"bench-{name}" if replicas > 1 or shared else ""]
    command = [sys.executable, "-m", "mfg_assets.cli", "gateway", "--broker", broker.url]
    gateways = [
        subprocess.Popen(
            [*command, "--client-id", client_id, *options],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        for client_id in client_ids
    ]
    lake = Lake(str(data_dir / "lake"), {})
    processes = [psutil.Process(gateway.pid) for gateway in gateways]
    peak = [0]
    stop_sampling = threading.Event()

    def tree_rss() -> int:  # a gateway with workers is several processes
        total = 0
        for process in processes:
            for member in [process, *process.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += member.memory_info().rss
        return total

    def sample() -> None:
        while not stop_sampling.is_set():
            with contextlib.suppress(psutil.NoSuchProcess):
                peak[0] = max(peak[0], tree_rss())
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    for client_id in client_ids:
        _wait_state_online(broker.port, client_id)
    prepared, ready = mp.Event(), mp.Event()
    pub = mp.Process(target=publisher, args=(broker.port, kind, n, prepared, ready, rate, nodes))
    pub.start()
    prepared.wait(300)
    cpu_before = _tree_cpu(processes)
    start = time.time()
    ready.set()
    rows = _wait_committed(lake, n)
    end = rows.get_column("committed_at").max().timestamp()
    cpu_used = _tree_cpu(processes) - cpu_before
    pub.join()
    for gateway in gateways:
        gateway.terminate()
    for gateway in gateways:
        gateway.wait(60)
    stop_sampling.set()
    log.close()
    latency = _latencies(lake, kind)
    rate = n / (end - start)
    figures = {
        "p50_latency_s": latency.quantile(0.5),
        "p99_latency_s": latency.quantile(0.99),
        "peak_rss_mb": peak[0] / 2**20,
        "cpu_us_per_msg": cpu_used / n * 1e6,
        "msgs_per_s": rate,
    }
    if kind == "sparkplug":
        figures["metrics_per_s"] = rate * METRICS_PER_DDATA
    return figures


def _tree_cpu(processes: list[psutil.Process]) -> float:
    """CPU seconds (user + system) of the gateway processes and their workers so far."""
    total = 0.0
    for process in processes:
        for member in [process, *process.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = member.cpu_times()
                total += times.user + times.system
    return total


def _wait_state_online(port: int, host_id: str) -> None:
    online = threading.Event()
    client = _client(port, f"bench-watch-{host_id}")
    client.on_message = lambda c, u, m: online.set() if orjson.loads(m.payload)["online"] else None
    client.subscribe(f"spBv1.0/STATE/{host_id}", qos=1)
    client.loop_start()
    if not online.wait(60):
        raise RuntimeError("gateway did not come online")
    client.loop_stop()
    client.disconnect()


def _wait_committed(lake: Lake, messages: int, timeout: float = 600) -> pl.DataFrame:
    """Wait until ``messages`` data rows are committed (a refused message never lands there:
    the benchmark then times out rather than report a rate for work not done)."""
    rows_spec, batches_spec = table("bronze.sensor_readings"), table("bronze.ingest_batches")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if lake.exists(rows_spec) and lake.row_count(rows_spec) >= messages:
            break
        time.sleep(0.2)
    else:
        raise TimeoutError("gateway did not commit everything in time")
    # a batch's record is appended after its rows: wait until every batch has one (reading
    # the records earlier gave no commit time, or an end time before the last commit)
    landed = set(lake.read(rows_spec).get_column("ingest_batch_id").unique())
    while time.time() < deadline:
        if lake.exists(batches_spec):
            batches = lake.read(batches_spec)
            if landed <= set(batches.get_column("ingest_batch_id")):
                return batches
        time.sleep(0.2)
    raise TimeoutError("gateway did not record every committed batch in time")


def _latencies(lake: Lake, kind: str) -> pl.Series:
    """Publish (payload timestamp) to Delta commit (its ingest batch's commit time)."""
    batches = lake.read(table("bronze.ingest_batches")).select("ingest_batch_id", "committed_at")
    rows = lake.read(table("bronze.sensor_readings")).select("ingest_batch_id", "event_time")
    joined = rows.join(batches, on="ingest_batch_id")
    seconds = (pl.col("committed_at") - pl.col("event_time")).dt.total_milliseconds() / 1000
    return joined.select(seconds.alias("latency")).get_column("latency")


def run_router(n: int, workdir: Path, per_batch: int = 2000) -> dict[str, float]:
    """CPU per DDATA of the worker path in this process: route (decode, validate, rows) and
    commit batches of ``per_batch`` pre-encoded 50-metric DDATA of one edge node."""
    from mfg_assets.gateway.commit import commit_items
    from mfg_assets.gateway.routing import Router
    from mfg_assets.settings import DEFAULT_CONTRACT
    from mfg_assets.uns.contract import load_contract

    now = int(time.time() * 1000)
    topic = sparkplug.format_topic("DDATA", GROUP, NODE, DEVICE)
    births = [_nbirth(now=now), _dbirth(now=now)]
    data = [(topic, _payload("sparkplug", k, now)) for k in range(per_batch)]
    lake = Lake(str(workdir / "router-lake"), {})
    router = Router(load_contract(DEFAULT_CONTRACT), source="bench")
    routed = committed = 0.0
    for batch in range(1 + max(1, n // per_batch)):  # the first creates the tables: not timed
        items = [(t, p, k, 1, now) for k, (t, p) in enumerate([*births, *data])]
        started = time.process_time()
        done = commit_items(router, lake, items, retries=1, stopping=lambda: True)
        if batch:
            committed += time.process_time() - started
            routed += len(data)
        assert done.valid == len(items), f"router refused {len(items) - done.valid} messages"
    return {"cpu_us_per_ddata": committed / routed * 1e6}


def json_figures(broker: Mosquitto, workdir: Path, n: int, paced_s: float) -> dict[str, float]:
    raw = run_raw(broker, n)
    gw = run_gateway(broker, "json", n, workdir)
    # issue 7: replicas on one shared subscription, 1 -> 2 (JSON: stateless, so any replica
    # may take any message; Sparkplug needs --workers, see the README)
    shared_1 = run_gateway(broker, "json", n, workdir, shared=True)
    shared_2 = run_gateway(broker, "json", n, workdir, replicas=2)
    rate = gw["msgs_per_s"] / 2  # latency at a sustainable load: half of what it sustained
    paced = run_gateway(broker, "json", int(rate * paced_s), workdir, rate)
    return {
        "raw_subscriber_json_msgs_per_s": raw,
        "gateway_json_msgs_per_s": gw["msgs_per_s"],
        "gateway_vs_raw_json_ratio": gw["msgs_per_s"] / raw,
        "gateway_json_p50_latency_s": paced["p50_latency_s"],
        "gateway_json_p99_latency_s": paced["p99_latency_s"],
        "gateway_json_flood_p99_latency_s": gw["p99_latency_s"],
        "gateway_json_peak_rss_mb": gw["peak_rss_mb"],
        "gateway_json_cpu_us_per_msg": gw["cpu_us_per_msg"],
        "gateway_json_shared_1_replica_msgs_per_s": shared_1["msgs_per_s"],
        "gateway_json_shared_2_replicas_msgs_per_s": shared_2["msgs_per_s"],
        "gateway_replicas_2_vs_1_ratio": shared_2["msgs_per_s"] / shared_1["msgs_per_s"],
    }


def sparkplug_figures(
    broker: Mosquitto, workdir: Path, n: int, paced_s: float, nodes: int
) -> dict[str, float]:
    """Single-node feed (in-process gateway, --workers 1, paced latency), then the
    ``nodes``-node feed with --workers 1 and 2."""
    raw = run_raw(broker, n, "sparkplug") * METRICS_PER_DDATA
    one = run_gateway(broker, "sparkplug", n, workdir)
    one_w1 = run_gateway(broker, "sparkplug", n, workdir, workers=1)
    rate = one["msgs_per_s"] / 2
    paced = run_gateway(broker, "sparkplug", int(rate * paced_s), workdir, rate)
    multi_w1 = run_gateway(broker, "sparkplug", n, workdir, workers=1, nodes=nodes)
    multi_w2 = run_gateway(broker, "sparkplug", n, workdir, workers=2, nodes=nodes)
    multi = f"gateway_sparkplug_{nodes}nodes"
    return {
        "raw_subscriber_sparkplug_1node_metrics_per_s": raw,
        "gateway_sparkplug_1node_metrics_per_s": one["metrics_per_s"],
        "gateway_vs_raw_sparkplug_1node_ratio": one["metrics_per_s"] / raw,
        "gateway_sparkplug_1node_p50_latency_s": paced["p50_latency_s"],
        "gateway_sparkplug_1node_p99_latency_s": paced["p99_latency_s"],
        "gateway_sparkplug_1node_peak_rss_mb": one["peak_rss_mb"],
        "gateway_sparkplug_1node_cpu_us_per_ddata": one["cpu_us_per_msg"],
        "gateway_sparkplug_1node_workers1_metrics_per_s": one_w1["metrics_per_s"],
        "gateway_sparkplug_1node_workers1_cpu_us_per_ddata": one_w1["cpu_us_per_msg"],
        "gateway_sparkplug_1node_workers1_peak_rss_mb": one_w1["peak_rss_mb"],
        "sparkplug_multi_feed_nodes": float(nodes),
        f"{multi}_workers1_metrics_per_s": multi_w1["metrics_per_s"],
        f"{multi}_workers1_cpu_us_per_ddata": multi_w1["cpu_us_per_msg"],
        f"{multi}_workers2_metrics_per_s": multi_w2["metrics_per_s"],
        f"{multi}_workers2_cpu_us_per_ddata": multi_w2["cpu_us_per_msg"],
        f"{multi}_workers2_peak_rss_mb": multi_w2["peak_rss_mb"],
        f"{multi}_workers_2_vs_1_ratio": multi_w2["metrics_per_s"] / multi_w1["metrics_per_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller run, under a minute")
    parser.add_argument(
        "--only",
        choices=["json", "sparkplug", "router"],
        help="run one part (router: the in-process CPU-per-DDATA figure alone)",
    )
    parser.add_argument(
        "--sparkplug-nodes",
        type=int,
        default=4,
        help="edge nodes of the multi-node Sparkplug feed (default 4)",
    )
    args = parser.parse_args()
    n_json = 20_000 if args.quick else 100_000
    n_spb = 4_000 if args.quick else 20_000
    paced_s = 5 if args.quick else 20
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        workdir = Path(tmp)
        router = run_router(n_spb // 2 if args.quick else n_spb, workdir)
        figures["router_sparkplug_1node_cpu_us_per_ddata"] = router["cpu_us_per_ddata"]
        if args.only == "router":
            report("bench_gateway_router", figures)
            return
        (workdir / "mq").mkdir()
        broker = Mosquitto(workdir / "mq").start()
        try:
            if args.only in (None, "json"):
                figures |= json_figures(broker, workdir, n_json, paced_s)
            if args.only in (None, "sparkplug"):
                nodes = args.sparkplug_nodes
                figures |= sparkplug_figures(broker, workdir, n_spb, paced_s, nodes)
        finally:
            broker.stop()
    # a partial run gets its own file: it must not replace the full run's figures
    report("bench_gateway" if args.only is None else f"bench_gateway_{args.only}", figures)


if __name__ == "__main__":
    main()
