"""The batch path into bronze: load UNS replay files (simulator output or a capture).

A replay file is JSON lines, one UNS message per line: ``{"ts", "topic", "payload"}`` for
JSON payloads or ``{"ts", "topic", "payload_b64"}`` for binary ones (Sparkplug B). Each file
is loaded once (its sha256 is recorded in ``bronze.ingest_batches``); a file interrupted
half-way is loaded again whole, and silver's dedupe key removes the repeated rows.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
import polars as pl

from mfg_assets.gateway.routing import Batch, BlobStore, Router, message_id, now_ms
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.names import BRONZE_GROUND_TRUTH, BRONZE_INGEST_BATCHES
from mfg_assets.lake.registry import table
from mfg_assets.uns.contract import Contract

CHUNK_MESSAGES = 50_000
MESSAGES_GLOB = "**/messages*.jsonl"
GROUND_TRUTH_GLOB = "**/ground_truth*.jsonl"


@dataclass(frozen=True)
class LoadReport:
    file: str
    batch_id: str
    received: int
    valid: int
    invalid: int
    skipped: bool
    versions: dict[str, int]


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def loaded_files(lake: Lake) -> set[str]:
    batches = lake.read(table(BRONZE_INGEST_BATCHES))
    return set(batches.get_column("file_sha256").drop_nulls().to_list())


def pending_files(lake: Lake, replay_dir: Path) -> list[tuple[Path, str]]:
    """(file, sha256) of replay and ground-truth files under ``replay_dir`` not loaded yet."""
    done = loaded_files(lake)
    files = sorted({*replay_dir.glob(MESSAGES_GLOB), *replay_dir.glob(GROUND_TRUTH_GLOB)})
    hashed = [(path, file_sha256(path)) for path in files]
    return [(path, sha) for path, sha in hashed if sha not in done]


def iter_replay(
    path: Path, on_read: Callable[[int], None] | None = None
) -> Iterator[tuple[int, str | None, bytes, str | None]]:
    """(line number, topic, payload bytes, error) per line; a bad line yields its error.

    ``on_read(bytes_read)``: called every few thousand lines and at the end (progress).
    """
    read = 0
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            read += len(line)
            if on_read is not None and number % 5_000 == 0:
                on_read(read)
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
                topic = record["topic"]
                if "payload_b64" in record:
                    payload = base64.b64decode(record["payload_b64"], validate=True)
                elif isinstance(record.get("payload"), str):
                    payload = record["payload"].encode("utf-8")
                else:
                    payload = orjson.dumps(record["payload"])
                if not isinstance(topic, str):
                    raise TypeError("topic is not a string")
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                yield number, None, line.rstrip(b"\n"), f"bad_replay_line: line {number}: {exc}"
                continue
            yield number, topic, payload, None
    if on_read is not None:
        on_read(read)


def load_replay_file(
    lake: Lake, path: Path, contract: Contract, enterprise: str, sha: str | None = None,
    on_read: Callable[[int], None] | None = None,
) -> LoadReport:
    sha = sha or file_sha256(path)
    batch_id = f"replay-{sha[:16]}"
    router = Router(
        contract, source=f"replay:{path.name}", enterprise=enterprise, blobs=BlobStore(lake.root)
    )
    totals = {"received": 0, "valid": 0, "invalid": 0}
    versions: dict[str, int] = {}
    received_ms = now_ms()
    for _, topic, payload, error in iter_replay(path, on_read):
        if error is not None or topic is None:
            router.quarantine_raw(payload, received_ms, error or "bad_replay_line")
        else:
            router.route(topic, payload, received_ms)
        if router.pending >= CHUNK_MESSAGES:
            _flush(lake, router.take(batch_id), totals, versions)
    _flush(lake, router.take(batch_id), totals, versions)
    _record_batch(lake, batch_id, f"replay:{path.name}", path, sha, totals)
    return LoadReport(str(path), batch_id, skipped=False, versions=versions, **totals)


def load_ground_truth_file(lake: Lake, path: Path, sha: str | None = None) -> LoadReport:
    sha = sha or file_sha256(path)
    batch_id = f"truth-{sha[:16]}"
    rows = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        record = orjson.loads(line)  # written by our simulator: a bad line is a bug, so raise
        rows.append(
            {
                "record_id": message_id(f"{path.name}:{number}", line),
                "ingest_batch_id": batch_id,
                "kind": str(record.get("kind", "unknown")),
                "record": line.decode("utf-8"),
            }
        )
    spec = table(BRONZE_GROUND_TRUTH)
    result = lake.append(spec, pl.DataFrame(rows, schema=spec.polars_schema), batch=batch_id)
    totals = {"received": len(rows), "valid": len(rows), "invalid": 0}
    _record_batch(lake, batch_id, f"truth:{path.name}", path, sha, totals)
    versions = {spec.qualified_name: result.version} if result.version is not None else {}
    return LoadReport(str(path), batch_id, skipped=False, versions=versions, **totals)


def load_pending(
    lake: Lake, replay_dir: Path, contract: Contract, enterprise: str,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> list[LoadReport]:
    """Load every replay file under ``replay_dir`` not loaded yet.

    ``on_progress(file name, bytes done, bytes total)``: bytes of the pending files read
    (a few big files: counting files would leave a bar at 0 of 2 for most of the load).
    """
    reports = []
    pending = pending_files(lake, replay_dir)
    total = sum(path.stat().st_size for path, _ in pending)
    done = 0
    for path, sha in pending:
        name = path.relative_to(replay_dir).as_posix()

        def read(n: int, name: str = name, before: int = done) -> None:
            if on_progress is not None:
                on_progress(name, before + n, total)

        read(0)
        if path.name.startswith("ground_truth"):
            reports.append(load_ground_truth_file(lake, path, sha))
        else:
            reports.append(load_replay_file(lake, path, contract, enterprise, sha, read))
        done += path.stat().st_size
        read(0, before=done)  # the file is written: all of it counts
    return reports


def write_batch(lake: Lake, batch: Batch) -> dict[str, int]:
    """Append a routed batch to its bronze tables; returns table -> committed version."""
    # Tables commit independently and delta-rs releases the GIL while writing: in parallel.
    with ThreadPoolExecutor(max_workers=max(1, len(batch.tables))) as pool:
        results = list(
            pool.map(
                lambda item: lake.append(table(item[0]), item[1], batch=batch.batch_id),
                batch.tables.items(),
            )
        )
    return {result.table: result.version for result in results if result.version is not None}


def _flush(lake: Lake, batch: Batch, totals: dict[str, int], versions: dict[str, int]) -> None:
    versions.update(write_batch(lake, batch))
    totals["received"] += batch.received
    totals["valid"] += batch.valid
    totals["invalid"] += batch.invalid


def _record_batch(
    lake: Lake, batch_id: str, source: str, path: Path, sha: str, totals: dict[str, int]
) -> None:
    # Written last: a file only counts as loaded once all its rows are committed.
    spec = table(BRONZE_INGEST_BATCHES)
    row = {
        "ingest_batch_id": batch_id,
        "source": source,
        "file": str(path),
        "file_sha256": sha,
        "committed_at": datetime.now(UTC),
        "messages": totals["received"],
        "valid": totals["valid"],
        "invalid": totals["invalid"],
    }
    lake.append(spec, pl.DataFrame([row], schema=spec.polars_schema), batch=batch_id)
