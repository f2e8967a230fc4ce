"""Progress of the long commands: the work functions report ``on_progress(phase, done,
total)`` with totals that add up; `mfg` draws them as a bar on a terminal and prints nothing
extra to a pipe."""

from __future__ import annotations

import io
import itertools
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mfg_assets.cli import main, train_progress
from mfg_assets.console import progress
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.importers import import_images, import_process_runs
from mfg_assets.sim import SimConfig, write_replay

Call = tuple[str, int, int]


class Recorder:
    """Keeps every on_progress call; checks the invariants every reporter must keep."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def __call__(self, phase: str, done: int, total: int) -> None:
        assert 0 <= done <= total, (phase, done, total)
        self.calls.append((phase, done, total))

    def phase(self, name: str) -> list[Call]:
        return [call for call in self.calls if call[0] == name]


def _monotonic(calls: list[Call]) -> bool:
    return all(a[1] <= b[1] for a, b in itertools.pairwise(calls))


def test_simulate_reports_every_simulated_minute_and_writes_the_same_replay(tmp_path):
    config = SimConfig(seed=3, duration_h=0.25)
    seen = Recorder()
    with_bar = write_replay(config, tmp_path / "a", on_progress=seen)
    without = write_replay(config, tmp_path / "b")
    minutes = math.ceil(0.25 * 60)
    assert {total for _, _, total in seen.calls} == {minutes}
    assert seen.calls[0][1] == 0 and seen.calls[-1][1:] == (minutes, minutes)
    assert _monotonic(seen.calls)
    # one call per minute passed, not one per message
    assert len(seen.calls) <= minutes + 2 < with_bar.messages
    assert (with_bar.files["messages"].read_bytes()
            == without.files["messages"].read_bytes())


@pytest.mark.integration
def test_publish_reports_simulated_minutes_to_the_end(broker):
    from mfg_assets.sim import publish

    config = SimConfig(seed=5, duration_h=0.1, sensor_period_s=30.0, image_period_s=60.0)
    seen = Recorder()
    counts = publish(config, broker.url, on_progress=seen)
    assert counts["total"] > len(seen.calls)
    assert seen.calls[0][1] == 0 and seen.calls[-1][1:] == (6, 6) and _monotonic(seen.calls)


def test_load_reports_the_bytes_of_every_pending_file(data_dir):
    from mfg_assets.gateway.replay import load_pending
    from mfg_assets.settings import get_settings
    from mfg_assets.uns.contract import load_contract

    replay = data_dir / "replay"
    write_replay(SimConfig(seed=1, duration_h=0.1), replay / "r1")
    files = sorted([*replay.glob("**/messages*.jsonl"), *replay.glob("**/ground_truth*.jsonl")])
    size = sum(path.stat().st_size for path in files)
    settings = get_settings()
    seen = Recorder()
    reports = load_pending(Lake(), replay, load_contract(settings.contract_path),
                           settings.enterprise, on_progress=seen)
    assert len(reports) == len(files) == 2
    assert {total for _, _, total in seen.calls} == {size}
    assert seen.calls[-1][1] == size and _monotonic(seen.calls)
    assert {phase for phase, _, _ in seen.calls} == {"r1/messages.jsonl",
                                                     "r1/ground_truth.jsonl"}
    # loaded: a second load has nothing pending and reports no bytes
    again = Recorder()
    assert load_pending(Lake(), replay, load_contract(settings.contract_path),
                        settings.enterprise, on_progress=again) == []
    assert again.calls == []


@pytest.mark.parametrize("n", [5, 20])  # 20: the threaded decode (16 or more files)
def test_importing_n_images_reports_n_decoded_then_the_landing_steps(lake, tmp_path, n):
    from mfg_assets.sim.hard_images import hard_set, write_folder

    labels = write_folder(hard_set(n, 32, seed=1), tmp_path / "imgs")
    seen = Recorder()
    report = import_images(lake, tmp_path / "imgs", labels, on_progress=seen)
    decoding = seen.phase("decoding images")
    assert [done for _, done, _ in decoding] == list(range(n + 1))  # 0, 1, ..., n
    assert {total for _, _, total in decoding} == {n}
    assert report.rows_written["silver.inspection_images"] == n
    landing = seen.calls[len(decoding):]
    assert [phase for phase, _, _ in landing[:-1]] == [
        "checking silver.inspection_images", "writing bronze.inspection_images",
        "writing silver.inspection_images", "recording the batch"]
    assert [done for _, done, _ in landing] == [0, 1, 2, 3, 4]
    assert {total for _, _, total in landing} == {4}


def test_table_import_reports_each_table_typed_and_written(lake, tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("unit_id,ts,yield,temp\nu1,2026-11-01T08:00:00Z,95,200\n"
                    "u2,2026-11-01T09:00:00Z,80,201\n")
    seen = Recorder()
    import_process_runs(lake, path, "yield", on_progress=seen)
    phases = [phase for phase, _, _ in seen.calls]
    for table_name in ("silver.process_runs", "silver.process_parameters"):
        assert f"checking {table_name}" in phases and f"writing {table_name}" in phases
    assert seen.calls[-1][1] == seen.calls[-1][2] == 6  # 2 typed, 3 written, the batch
    assert _monotonic(seen.calls)


def test_a_dagster_run_reports_each_step_as_it_starts_and_ends():
    import dagster as dg

    @dg.asset
    def upstream() -> int:
        return 1

    @dg.asset
    def downstream(upstream: int) -> int:
        return upstream + 1

    @dg.asset
    def broken(downstream: int) -> int:
        raise ValueError("a failed step still ends the bar's step")

    seen = Recorder()
    steps = {"upstream": "features", "downstream": "challenger and gate", "broken": "champion"}
    instance = dg.DagsterInstance.ephemeral()
    run_id = "a0000000-0000-4000-8000-000000000001"
    instance.add_event_listener(run_id, train_progress(steps, seen))
    job = dg.Definitions(assets=[upstream, downstream, broken],
                         jobs=[dg.define_asset_job("j")]).resolve_job_def("j")
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    result = job.execute_in_process(instance=instance, run_id=run_id, raise_on_error=False,
                                    run_config=quiet)
    assert not result.success
    assert seen.calls == [("features", 0, 3), ("features", 1, 3),
                          ("challenger and gate", 1, 3), ("challenger and gate", 2, 3),
                          ("champion", 2, 3), ("champion", 3, 3)]


# -- what a person sees -------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_shows_the_phase_and_its_count_on_a_terminal_only():
    terminal, pipe = _Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        with progress("simulating 1 h", stream=stream) as bar:
            bar.step("minutes", 30, 60)
            bar.step("minutes", 60, 60)
    drawn = terminal.getvalue()
    assert "simulating 1 h: minutes" in drawn and "60/60" in drawn
    assert pipe.getvalue() == ""


def test_a_long_description_is_cut_in_the_middle_to_stay_on_one_line():
    terminal = _Terminal()
    root = "/a/very/long/lakehouse/root/" * 4
    with progress(f"loading {root} into bronze", stream=terminal, unit="bytes") as bar:
        bar.step("r1/messages.jsonl", 2048, 4096)
    frames = [frame for frame in terminal.getvalue().split("\r") if "kB" in frame]
    assert frames, terminal.getvalue()
    last = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", frames[-1]).splitlines()[0]
    # the phase whole, the description cut in its middle (its start and end kept)
    assert "load" in last and "…" in last and "bronze: r1/messages.jsonl" in last
    assert "/lakehouse/root/" not in last
    assert "2.0/4.1 kB" in last and len(last) <= 80  # rich's width for a file: 80


def test_piped_commands_print_only_their_results(data_dir, tmp_path, capsys):
    out = tmp_path / "replay" / "p1"
    assert main(["simulate", "--hours", "0.1", "--seed", "2", "--out", str(out)]) == 0
    assert main(["load", "--replay-dir", str(tmp_path / "replay")]) == 0
    runs = tmp_path / "runs.csv"
    runs.write_text("unit_id,ts,yield\nu1,2026-11-01T08:00:00Z,95\n")
    assert main(["import", "table", str(runs), "--as", "process_runs", "--label", "yield"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # stderr is no terminal here: no bar, no spinner
    lines = captured.out.splitlines()
    assert len(lines) == 4, lines  # wrote ..., two files loaded, the import's report
    assert lines[0].startswith("wrote ") and "quarantined" in lines[1]
    assert "\x1b" not in captured.out and "\r" not in captured.out


@pytest.mark.slow
def test_a_piped_subprocess_gets_no_control_characters(data_dir, tmp_path):
    # the real entry point, a real pipe: what `mfg simulate ... | tee log` receives
    out = tmp_path / "sim"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "mfg"), "simulate", "--hours", "0.1",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=True)
    assert done.stderr == ""
    assert done.stdout.startswith("wrote ") and done.stdout.count("\n") == 1
    assert "\x1b" not in done.stdout + done.stderr
