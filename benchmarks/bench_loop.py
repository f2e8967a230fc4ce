"""The closed loop with a control: false alarms without drift, and the time to recover
(drift onset -> promoted edge bundle) with it, every run after the onset launched by the
Dagster daemon (the closed loop of `mfg demo --scenario drift`).

    python benchmarks/bench_loop.py [--quick] [--runs N] [--seed N] [--timeout S]
                                    [--control-watch S] [--no-control]

Each run seeds a fresh lakehouse under <data dir>/loop (72 h of history or more, see
``loop.scenario.history_hours``; a sensor-anomaly champion, bundles on two line edges),
starts the daemon, gateway and edge runtimes and switches the live day on:

- control (one run): the live day without drift, watched for ``--control-watch`` seconds.
  Targets: 0 drift retrains (runs tagged mfg/trigger=drift) and 0 machines declared drifted.
- ``sensor_replacement`` (``--runs`` runs, default 3): weld-02's current sensor reads 1.6x.
  Targets: detected in every run, no other machine declared, time to recover <= 300 s
  (median over the runs).

Figures (flat JSON in <data dir>/bench/bench_loop.json): ``control_*`` (drift evaluations,
declarations, declared machines, drift retrains), ``time_to_recover_median_s`` and its
ratio to the target, each run's time to recover and stages (``run<i>/...``), the median
seconds to each stage, quality before/after of the first recovered run, and the host's
load average before and after (the machine may be shared: timings move with its load).

``--quick``: one run each, shorter waits (the control 240 s, the scenario gives up 600 s
after the onset). A loop cannot be shortened much further: the history keeps the champion
above its floors and the drift report's reference like for like; the daemon's ticks and
the canary's evidence take what they take.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from _report import report

from mfg_assets.loop.run import LoopResult, run_loop
from mfg_assets.loop.run import report as print_report
from mfg_assets.loop.scenario import SCENARIO, LoopConfig
from mfg_assets.settings import get_settings

TARGET_S = 300.0


def control_figures(result: LoopResult) -> dict[str, float]:
    d = result.declarations
    out = {
        "control_drift_retrains": float(len(result.drift_retrains)),
        "control_untouched_declared": float(len(result.untouched_declared)),
        "control_drift_evaluations": float(sum(d.evaluations.values())) if d else 0.0,
        "control_drift_declarations": float(sum(d.declared.values())) if d else 0.0,
        "control_runs_after_onset": float(len(result.timeline.runs)),
    }
    if d:
        out |= {f"control_drift_evaluations/{f}": float(n) for f, n in d.evaluations.items()}
        out |= {f"control_drift_declarations/{f}": float(n) for f, n in d.declared.items()}
    return out


def scenario_figures(results: list[LoopResult]) -> dict[str, float]:
    out: dict[str, float] = {}
    for i, result in enumerate(results, 1):
        t = result.timeline
        out[f"run{i}/recovered"] = float(result.recovered)
        out[f"run{i}/detected"] = float("drift_detected" in t.stages)
        out[f"run{i}/untouched_declared"] = float(len(result.untouched_declared))
        out[f"run{i}/drift_retrains"] = float(len(result.drift_retrains))
        out |= {f"run{i}/stage_s/{s}": v for s in t.stages if (v := t.seconds(s)) is not None}
        if t.time_to_recover_s is not None:
            out[f"run{i}/time_to_recover_s"] = t.time_to_recover_s
            compute = sum(r.compute_s for r in t.runs)
            out[f"run{i}/runs_compute_share_of_recovery"] = compute / t.time_to_recover_s
    stages = {s for r in results for s in r.timeline.stages}
    for stage in sorted(stages):
        values = [v for r in results if (v := r.timeline.seconds(stage)) is not None]
        out[f"stage_s_median/{stage}"] = statistics.median(values)
    recovered = [r.timeline.time_to_recover_s for r in results if r.recovered]
    out["runs"] = float(len(results))
    out["recovered_runs"] = float(len(recovered))
    out["detected_runs"] = float(sum("drift_detected" in r.timeline.stages for r in results))
    out["scenario_untouched_declared"] = float(sum(len(r.untouched_declared) for r in results))
    # a run that did not recover counts as infinitely slow: the median is only reported
    # when at least half of the runs recovered
    if len(recovered) * 2 > len(results):
        ordered = sorted(recovered) + [float("inf")] * (len(results) - len(recovered))
        median = statistics.median(ordered)
        out["time_to_recover_median_s"] = median
        out["time_to_recover_vs_target"] = median / TARGET_S
    first = next((r for r in results if r.quality), None)
    if first is not None:
        for when, metrics in first.quality.items():
            out |= {f"quality_{when}/{k}": v for k, v in metrics.items()}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=3, help="sensor_replacement runs")
    parser.add_argument("--seed", type=int, default=LoopConfig.seed)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--control-watch", type=float, default=360.0)
    parser.add_argument("--no-control", action="store_true",
                        help="only the scenario runs (the control's figures are then missing)")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    figures: dict[str, float] = {"load_avg_1m_start": os.getloadavg()[0]}
    # One folder per loop: MLflow keeps its SQLite engine per tracking URI for the life of
    # this process, and a lakehouse deleted and made again under the same path leaves that
    # engine on a deleted file ("attempt to write a readonly database").
    base = get_settings().data_dir / "loop"

    control = None
    if not args.no_control:
        control = run_loop(LoopConfig(seed=args.seed, scenario=None, control_watch_s=(
            240.0 if args.quick else args.control_watch)), root=base / "control")
        print_report(control)
        figures |= control_figures(control)
    results = []
    for i in range(runs):
        print(f"\n== {SCENARIO} run {i + 1}/{runs}")
        result = run_loop(LoopConfig(seed=args.seed, scenario=SCENARIO,
                                     timeout_s=600.0 if args.quick else args.timeout),
                          root=base / f"{SCENARIO}-{i + 1}")
        print_report(result)
        results.append(result)
    figures |= scenario_figures(results)
    figures["load_avg_1m_end"] = os.getloadavg()[0]
    report("bench_loop", figures)
    clean = control is None or (not control.drift_retrains and not control.untouched_declared)
    return 0 if clean and all(r.recovered for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
