"""write_replay: a time-ordered message log, ground truth and a manifest that agree."""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path

import orjson

from mfg_assets.sim import SimConfig, ground_truth, iter_messages, read_replay, write_replay
from mfg_assets.uns import sparkplug

CONFIG = SimConfig(seed=2, duration_h=1.0, drift=[("material_lot", 0.5)], fault_rate_per_day=8.0)


def test_replay_files_agree_with_the_stream(tmp_path: Path) -> None:
    summary = write_replay(CONFIG, tmp_path / "run")
    lines = read_replay(tmp_path / "run" / "messages.jsonl")
    stream = list(iter_messages(CONFIG))
    assert summary.messages == len(lines) == len(stream)
    for line, message in zip(lines, stream, strict=True):
        assert line["ts"] == message.ts_ms and line["topic"] == message.topic
        if message.topic.startswith(sparkplug.NAMESPACE):
            assert set(line) == {"ts", "topic", "payload_b64"}
            assert base64.b64decode(line["payload_b64"]) == message.payload
        else:
            assert set(line) == {"ts", "topic", "payload"}
            assert line["payload"] == message.doc
    stamps = [line["ts"] for line in lines]
    assert stamps == sorted(stamps)

    truth = [
        orjson.loads(x) for x in (tmp_path / "run" / "ground_truth.jsonl").read_bytes().splitlines()
    ]
    assert truth == ground_truth(CONFIG)
    assert {r["kind"] for r in truth} == {"fault", "drift"}
    assert summary.ground_truth_records == len(truth)

    manifest = orjson.loads((tmp_path / "run" / "manifest.json").read_bytes())
    assert manifest["seed"] == CONFIG.seed
    assert manifest["config"] == orjson.loads(orjson.dumps(CONFIG.to_dict()))
    assert manifest["counts"] == dict(Counter(m.channel for m in stream)) == summary.counts
    assert manifest["messages"] == len(lines)
    assert (manifest["start_ms"], manifest["end_ms"]) == (CONFIG.start_ms, CONFIG.end_ms)
    assert manifest["first_message_ms"] == stamps[0] and manifest["last_message_ms"] == stamps[-1]
    assert manifest["ground_truth"] == dict(Counter(r["kind"] for r in truth))
    assert summary.bytes_written == sum(p.stat().st_size for p in (tmp_path / "run").iterdir())
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_command_line_writes_a_replay(tmp_path: Path, capsys) -> None:
    from mfg_assets.sim.__main__ import main

    code = main(
        [
            "--hours",
            "0.2",
            "--seed",
            "4",
            "--drift",
            "camera_lighting@0.1",
            "replay",
            str(tmp_path / "cli"),
        ]
    )
    assert code == 0 and "messages" in capsys.readouterr().out
    manifest = orjson.loads((tmp_path / "cli" / "manifest.json").read_bytes())
    assert manifest["config"]["drift"] == [["camera_lighting", 0.1]]
    assert main(["--image-size", "300", "replay", str(tmp_path / "bad")]) == 2
