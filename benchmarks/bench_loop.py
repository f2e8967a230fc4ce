"""Time to recover: drift onset -> promoted edge bundle, with every run launched by the
Dagster daemon (the closed loop of `mfg demo --scenario drift`).

    python benchmarks/bench_loop.py [--quick] [--seed N] [--timeout S]

Seeds a fresh lakehouse under <data dir>/loop (48 h of history, a sensor-anomaly champion,
bundles on two line edges), starts the daemon, gateway and edge runtimes, switches the
``sensor_replacement`` drift on and watches. Figures: seconds from the onset to each stage
(bronze commit, silver, drift verdict, retrain launched, new champion, bundle, canary,
promoted), the time to recover and its ratio to the 300 s target, the compute the loop's
runs used against their wall time (the rest is queueing and process start), and the model
quality before/after on post-drift hold-out windows (old vs new champion) and at the edges
(canary with the new bundle vs control with the old one, same windows).

``--quick`` only gives up earlier (10 minutes after the onset instead of --timeout): the
loop cannot be shortened (48 h of history keep the champion above its floors; the daemon's
ticks and the canary's evidence take what they take), so it does not end within a minute.
"""

from __future__ import annotations

import argparse
import sys

from _report import report

from mfg_assets.loop.run import report as print_report
from mfg_assets.loop.run import run_loop
from mfg_assets.loop.scenario import LoopConfig

TARGET_S = 300.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=LoopConfig.seed)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    config = LoopConfig(seed=args.seed, timeout_s=600.0 if args.quick else args.timeout)
    result = run_loop(config)
    print_report(result)
    figures = result.figures()
    compute = sum(r.compute_s for r in result.timeline.runs)
    figures["runs_compute_s"] = compute
    if result.timeline.time_to_recover_s is not None:
        figures["time_to_recover_vs_target"] = result.timeline.time_to_recover_s / TARGET_S
        figures["runs_compute_share_of_recovery"] = compute / result.timeline.time_to_recover_s
    figures["recovered"] = float(result.recovered)
    report("bench_loop", figures)
    return 0 if result.recovered else 1


if __name__ == "__main__":
    sys.exit(main())
