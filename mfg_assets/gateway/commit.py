"""Route one micro-batch of received messages and commit it to Delta (no MQTT).

Shared by the in-process writer thread and the worker processes of ``mfg gateway
--workers N``: both hand in the same ``Item`` tuples and acknowledge what comes back only
after :func:`commit_items` returned.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from mfg_assets.gateway.replay import write_batch
from mfg_assets.gateway.routing import Batch, Router
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.registry import table

log = logging.getLogger("mfg.gateway")

# (topic, payload, mid, qos, received_ms): a plain tuple, built once per message on the
# network thread, where every microsecond is taken from the MQTT receive rate.
Item = tuple[str, bytes, int, int, int]


@dataclass(slots=True)
class Committed:
    """What a committed micro-batch tells the MQTT side: what to acknowledge, and counts."""

    acks: list[tuple[int, int]]  # (mid, qos) of QoS > 0 messages
    received_ms: list[int]
    committed_ms: float
    payload_bytes: int
    valid: int
    invalid: int
    seconds: float
    write_failures: int = 0
    rebirths: list[tuple[str, str, str]] = field(default_factory=list)


def commit_items(
    router: Router,
    lake: Lake,
    items: Sequence[Item],
    *,
    retries: int,
    stopping: Callable[[], bool],
    on_failure: Callable[[], None] | None = None,
) -> Committed:
    """Route ``items``, append them to their bronze tables, record the ingest batch."""
    started = time.perf_counter()
    route = router.route
    for topic, payload, _mid, _qos, received_ms in items:
        route(topic, payload, received_ms)
    batch = router.take(f"gw-{uuid.uuid4().hex[:16]}")
    failures = write_with_retries(
        lake, batch, retries=retries, stopping=stopping, on_failure=on_failure
    )
    committed_ms = time.time() * 1000
    rebirths = list(router.rebirth_requests)
    router.rebirth_requests.clear()
    return Committed(
        acks=[(item[2], item[3]) for item in items if item[3] > 0],
        received_ms=[item[4] for item in items],
        committed_ms=committed_ms,
        payload_bytes=sum(len(item[1]) for item in items),
        valid=batch.valid,
        invalid=batch.invalid,
        seconds=time.perf_counter() - started,
        write_failures=failures,
        rebirths=rebirths,
    )


def write_with_retries(
    lake: Lake,
    batch: Batch,
    *,
    retries: int,
    stopping: Callable[[], bool],
    on_failure: Callable[[], None] | None = None,
) -> int:
    """Commit or keep trying (an unacknowledged batch must not be acknowledged later);
    returns the number of failed attempts before the commit succeeded."""
    attempt = 0
    while True:
        try:
            write_batch(lake, batch)
            record_batch(lake, batch)
            return attempt
        except Exception:
            attempt += 1
            if on_failure is not None:
                on_failure()
            log.exception("Delta commit of %s failed (attempt %d)", batch.batch_id, attempt)
            if stopping() and attempt >= retries:
                # Exiting without acknowledging: the broker redelivers on restart.
                raise
            time.sleep(min(30.0, 0.5 * 2 ** min(attempt, 6)))


def record_batch(lake: Lake, batch: Batch) -> None:
    spec = table("bronze.ingest_batches")
    row = {
        "ingest_batch_id": batch.batch_id,
        "source": "gateway",
        "file": None,
        "file_sha256": None,
        "committed_at": datetime.now(UTC),
        "messages": batch.received,
        "valid": batch.valid,
        "invalid": batch.invalid,
    }
    lake.append(spec, pl.DataFrame([row], schema=spec.polars_schema), batch=batch.batch_id)
