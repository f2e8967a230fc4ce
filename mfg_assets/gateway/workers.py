"""``mfg gateway --workers N``: one MQTT receiver process, N routing-and-commit processes.

Why: one Python process is bound by its interpreter lock, and in the gateway paho's
network thread (reading packets, acknowledging) and the writer (decode, validate, build
frames) take turns on it. With workers the receiving process only moves bytes; decoding,
contract validation and the Delta commits run in their own processes, on other cores.

Partitioning keeps every guarantee of the single-process gateway: all messages of one
Sparkplug edge node (its births, data, deaths, commands) go to the same worker in arrival
order, so that worker's session sees every ``seq`` and birth alias of the node; JSON topics
are spread by topic. A worker reports each commit back, and only then does the receiver
acknowledge those messages to the broker.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing as mp
import signal
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from functools import lru_cache
from multiprocessing.connection import Connection
from pathlib import Path

from mfg_assets.gateway.commit import Committed, Item, commit_items
from mfg_assets.gateway.config import GatewayConfig
from mfg_assets.gateway.routing import BlobStore, Router
from mfg_assets.lake.delta import Lake

log = logging.getLogger("mfg.gateway")

SPARKPLUG_PREFIX = "spBv1.0/"


@lru_cache(maxsize=65536)  # topics repeat for every message of a machine
def partition_key(topic: str) -> str:
    """Messages with the same key must be handled by one worker, in order.

    Sparkplug: the edge node (``group/node``; its devices share the node's ``seq``); STATE
    topics of host applications share one key. Anything else: the topic itself.
    """
    if topic.startswith(SPARKPLUG_PREFIX):
        parts = topic.split("/", 4)
        if len(parts) >= 4 and parts[1] != "STATE":
            return f"{SPARKPLUG_PREFIX}{parts[1]}/{parts[3]}"
        return f"{SPARKPLUG_PREFIX}STATE"
    return topic


def worker_index(topic: str, workers: int) -> int:
    return zlib.crc32(partition_key(topic).encode()) % workers


class WorkerPool:
    """N spawned worker processes, each fed over its own pipe and reporting its commits."""

    def __init__(
        self,
        workers: int,
        config: GatewayConfig,
        contract_source: str | Path,
        lake: Lake,
        enterprise: str,
        on_committed: Callable[[Committed], None],
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self._on_committed = on_committed
        # spawn, not fork: the parent may already run polars/delta-rs thread pools.
        context = mp.get_context("spawn")
        self._inboxes: list[Connection] = []
        self._results: list[Connection] = []
        self._processes: list[mp.process.BaseProcess] = []
        for index in range(workers):
            inbox_r, inbox_w = context.Pipe(duplex=False)
            result_r, result_w = context.Pipe(duplex=False)
            process = context.Process(
                target=_worker_main,
                args=(index, config, str(contract_source), lake, enterprise, inbox_r, result_w),
                name=f"gateway-worker-{index}",
                daemon=True,
            )
            self._inboxes.append(inbox_w)
            self._results.append(result_r)
            self._processes.append(process)
        self._readers = [
            threading.Thread(target=self._read_results, args=(k,), name=f"gateway-results-{k}")
            for k in range(workers)
        ]
        self._send_lock = threading.Lock()

    def start(self) -> None:
        for process in self._processes:
            process.start()
        for reader in self._readers:
            reader.start()

    def dispatch(self, items: Sequence[Item]) -> None:
        """Send each message to its partition's worker (order within a partition kept)."""
        if self.workers == 1:
            chunks = [list(items)]
        else:
            chunks = [[] for _ in range(self.workers)]
            for item in items:
                chunks[worker_index(item[0], self.workers)].append(item)
        with self._send_lock:
            for inbox, chunk in zip(self._inboxes, chunks, strict=True):
                if chunk:
                    inbox.send(chunk)

    def alive(self) -> bool:
        return all(process.is_alive() for process in self._processes)

    def close(self, timeout: float = 30.0) -> None:
        """Ask every worker to commit what it holds and exit; wait for their last reports."""
        with self._send_lock:
            for inbox in self._inboxes:
                # a worker that is gone leaves its messages unacknowledged: redelivered
                with contextlib.suppress(BrokenPipeError, OSError):
                    inbox.send(None)
        deadline = time.monotonic() + timeout
        for reader in self._readers:
            reader.join(max(0.0, deadline - time.monotonic()))
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("%s did not stop in time; terminating it", process.name)
                process.terminate()

    def _read_results(self, index: int) -> None:
        connection = self._results[index]
        while True:
            try:
                committed = connection.recv()
            except (EOFError, OSError):
                if self._processes[index].exitcode not in (0, None):
                    log.error(
                        "gateway worker %d died (exit %s)", index, self._processes[index].exitcode
                    )
                return
            if committed is None:  # the worker flushed everything and is exiting
                return
            self._on_committed(committed)


def _worker_main(
    index: int,
    config: GatewayConfig,
    contract_source: str,
    lake: Lake,
    enterprise: str,
    inbox: Connection,
    results: Connection,
) -> None:
    from mfg_assets.uns.contract import load_contract

    # Ctrl-C reaches the whole process group: the receiver decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s worker-{index}: %(message)s"
    )
    router = Router(
        load_contract(contract_source),
        source=f"gateway:{config.client_id}",
        enterprise=enterprise,
        blobs=BlobStore(lake.root),
    )
    pending: list[Item] = []
    deadline = math.inf
    closing = threading.Event()  # the receiver asked us to flush and exit
    limit = config.batch_max_messages
    while True:
        if not closing.is_set():
            wait = max(0.0, deadline - time.monotonic()) if pending else 0.5
            if inbox.poll(wait):
                chunk = inbox.recv()
                if chunk is None:
                    closing.set()
                else:
                    if not pending:
                        deadline = time.monotonic() + config.batch_interval_s
                    pending.extend(chunk)
        if pending and (closing.is_set() or len(pending) >= limit or time.monotonic() >= deadline):
            batch, pending = pending[:limit], pending[limit:]
            results.send(
                commit_items(
                    router,
                    lake,
                    batch,
                    retries=config.write_retries,
                    stopping=closing.is_set,
                    backoff_s=config.write_backoff_s,
                )
            )
            deadline = time.monotonic() + config.batch_interval_s if pending else math.inf
        elif closing.is_set() and not pending:
            results.send(None)
            return
