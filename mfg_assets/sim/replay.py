"""Write a run to disk as a replayable message log with its ground truth and manifest."""

from __future__ import annotations

import base64
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from mfg_assets.sim.config import SimConfig
from mfg_assets.sim.messages import SimMessage
from mfg_assets.sim.stream import ground_truth, iter_messages, with_progress

MESSAGES_FILE = "messages.jsonl"
GROUND_TRUTH_FILE = "ground_truth.jsonl"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    out_dir: Path
    messages: int
    counts: dict[str, int]
    ground_truth_records: int
    start_ms: int
    end_ms: int
    bytes_written: int
    elapsed_s: float
    files: dict[str, Path] = field(default_factory=dict)

    def __str__(self) -> str:
        return (
            f"{self.messages} messages, {self.ground_truth_records} ground-truth records, "
            f"{self.bytes_written / 1e6:.1f} MB in {self.elapsed_s:.1f}s"
        )


def replay_line(message: SimMessage) -> bytes:
    """One line of messages.jsonl (without the newline).

    JSON payloads are spliced in as already serialised, so each document is encoded once.
    """
    head = b'{"ts":%d,"topic":%s,' % (message.ts_ms, orjson.dumps(message.topic))
    if message.is_json:
        return head + b'"payload":' + message.payload + b"}"
    return head + b'"payload_b64":"' + base64.b64encode(message.payload) + b'"}'


def read_replay(path: str | Path) -> list[dict[str, Any]]:
    """Load messages.jsonl back as dicts (tests, notebooks)."""
    with open(path, "rb") as f:
        return [orjson.loads(line) for line in f]


def write_replay(
    config: SimConfig,
    out_dir: str | Path,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> ReplaySummary:
    """Generate the run into ``out_dir``: messages.jsonl, ground_truth.jsonl, manifest.json.

    ``on_progress(phase, done, total)``: simulated minutes written (``stream.with_progress``).

    Files are written under temporary names and renamed at the end, so a reader never
    sees a half-written replay as complete.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    first_ts: int | None = None
    last_ts: int | None = None
    total = 0

    messages_path = out / MESSAGES_FILE
    tmp = messages_path.with_suffix(".jsonl.tmp")
    with open(tmp, "wb", buffering=1 << 20) as f:
        for message in with_progress(iter_messages(config), config, on_progress):
            f.write(replay_line(message))
            f.write(b"\n")
            counts[message.channel] += 1
            if first_ts is None:
                first_ts = message.ts_ms
            last_ts = message.ts_ms
            total += 1
    tmp.replace(messages_path)

    truth = ground_truth(config)
    truth_path = out / GROUND_TRUTH_FILE
    truth_path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in truth))

    manifest = {
        "format_version": FORMAT_VERSION,
        "generator": "mfg_assets.sim",
        "seed": config.seed,
        "config": config.to_dict(),
        "start_ms": config.start_ms,
        "end_ms": config.end_ms,
        "first_message_ms": first_ts,
        "last_message_ms": last_ts,
        "messages": total,
        "counts": dict(sorted(counts.items())),
        "ground_truth": dict(sorted(Counter(r["kind"] for r in truth).items())),
        "files": {"messages": MESSAGES_FILE, "ground_truth": GROUND_TRUTH_FILE},
    }
    manifest_path = out / MANIFEST_FILE
    manifest_path.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")

    files = {"messages": messages_path, "ground_truth": truth_path, "manifest": manifest_path}
    return ReplaySummary(
        out_dir=out,
        messages=total,
        counts=dict(sorted(counts.items())),
        ground_truth_records=len(truth),
        start_ms=config.start_ms,
        end_ms=config.end_ms,
        bytes_written=sum(p.stat().st_size for p in files.values()),
        elapsed_s=time.perf_counter() - started,
        files=files,
    )
