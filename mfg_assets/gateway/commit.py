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
from typing import Any

import polars as pl

from mfg_assets.gateway.replay import write_batch
from mfg_assets.gateway.routing import Batch, Router
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.names import BRONZE_INGEST_BATCHES
from mfg_assets.lake.registry import table
from mfg_assets.monitoring.alerts import post_alert

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
    write_failed: int = 0  # messages quarantined because their batch could not be written
    rebirths: list[tuple[str, str, str]] = field(default_factory=list)


def commit_items(
    router: Router,
    lake: Lake,
    items: Sequence[Item],
    *,
    retries: int,
    stopping: Callable[[], bool],
    on_failure: Callable[[], None] | None = None,
    backoff_s: float = 0.5,
) -> Committed:
    """Route ``items``, append them to their bronze tables, record the ingest batch.

    A batch that still fails after ``retries`` retries is not retried forever: its messages
    are quarantined as ``write_failed`` with the error (and acknowledged by the caller), so
    one batch the lake refuses cannot stop ingest. Only when even that quarantine cannot be
    written does this raise (nothing is acknowledged; the broker redelivers).
    """
    started = time.perf_counter()
    route = router.route
    for topic, payload, _mid, _qos, received_ms in items:
        route(topic, payload, received_ms)
    batch = router.take(f"gw-{uuid.uuid4().hex[:16]}")
    write_failed = 0
    try:
        failures = write_with_retries(
            lake,
            batch,
            retries=retries,
            stopping=stopping,
            on_failure=on_failure,
            backoff_s=backoff_s,
        )
    except WriteFailed as exc:
        failures = exc.attempts
        batch = _quarantine_failed(router, lake, items, exc, retries=retries, backoff_s=backoff_s)
        write_failed = len(items)
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
        write_failed=write_failed,
        rebirths=rebirths,
    )


class WriteFailed(RuntimeError):
    """A batch that failed every attempt; ``error`` is the last one."""

    def __init__(self, batch_id: str, attempts: int, error: BaseException) -> None:
        super().__init__(f"{batch_id}: {attempts} attempts failed: {_describe(error)}")
        self.attempts, self.error = attempts, error


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:500]


def write_with_retries(
    lake: Lake,
    batch: Batch,
    *,
    retries: int,
    stopping: Callable[[], bool],
    on_failure: Callable[[], None] | None = None,
    backoff_s: float = 0.5,
) -> int:
    """Commit, retrying at most ``retries`` times with exponential backoff (shortened
    while stopping); returns the failed attempts before the commit succeeded, or raises
    :class:`WriteFailed` after the last one."""
    attempt = 0
    while True:
        try:
            write_batch(lake, batch)
            record_batch(lake, batch)
            return attempt
        except BaseException as exc:  # delta-rs/polars panics are BaseExceptions (pyo3)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            attempt += 1
            if on_failure is not None:
                on_failure()
            log.warning(
                "Delta commit of %s failed (attempt %d of %d): %s",
                batch.batch_id,
                attempt,
                retries + 1,
                _describe(exc),
            )
            if attempt > retries:
                raise WriteFailed(batch.batch_id, attempt, exc) from exc
            delay = min(30.0, backoff_s * 2 ** (attempt - 1))
            time.sleep(min(delay, 1.0) if stopping() else delay)


def _quarantine_failed(
    router: Router,
    lake: Lake,
    items: Sequence[Item],
    failed: WriteFailed,
    *,
    retries: int,
    backoff_s: float,
) -> Batch:
    """Quarantine every message of a batch that could not be written (the alert)."""
    reason = f"write_failed: {_describe(failed.error)} (after {failed.attempts} attempts)"
    log.error("ALERT: %s; quarantining its %d messages as write_failed", failed, len(items))
    for topic, payload, _mid, _qos, received_ms in items:
        router.quarantine_message(topic, payload, received_ms, "write", reason)
    batch = router.take(f"gw-{uuid.uuid4().hex[:16]}")
    quarantined = False
    try:
        # raises when the quarantine cannot be written either: nothing acknowledged,
        # redelivered (and alerted all the same)
        write_with_retries(
            lake, batch, retries=retries, stopping=lambda: False, backoff_s=backoff_s
        )
        quarantined = True
    finally:
        post_alert(write_failed_alert(failed, items, quarantined), timeout_s=ALERT_TIMEOUT_S)
    return batch


# The webhook is called on the writer thread (rarely: after every retry failed); a slow one
# must not hold ingest up for long.
ALERT_TIMEOUT_S = 2.0


def write_failed_alert(
    failed: WriteFailed, items: Sequence[Item], quarantined: bool
) -> dict[str, Any]:
    """The alert for a batch the lake refused: what on-call needs to find the messages."""
    topics = sorted({item[0] for item in items})
    return {
        "kind": "gateway_write_failed",
        "messages": len(items),
        "attempts": failed.attempts,
        "error": _describe(failed.error),
        "quarantined": quarantined,  # False: not acknowledged, the broker redelivers
        "topics": topics[:20],
        "text": (
            f"gateway: a Delta write failed {failed.attempts} times; its {len(items)} messages "
            + (
                "were quarantined as write_failed (bronze.quarantine) and acknowledged"
                if quarantined
                else "could not be quarantined either and stay unacknowledged"
            )
        ),
    }


def record_batch(lake: Lake, batch: Batch) -> None:
    spec = table(BRONZE_INGEST_BATCHES)
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
