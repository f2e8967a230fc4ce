"""``python -m mfg_assets.sim replay OUT_DIR`` / ``... publish mqtt://host:1883``.

A thin command line for the simulator alone; the product's own CLI (``mfg``) may wrap it.
"""

from __future__ import annotations

import argparse
import sys

from mfg_assets.sim.config import SimConfig
from mfg_assets.sim.drift import DRIFT_SCENARIOS
from mfg_assets.sim.publish import publish
from mfg_assets.sim.replay import write_replay


def _drift(text: str) -> tuple[str, float]:
    name, _, hours = text.partition("@")
    if name not in DRIFT_SCENARIOS or not hours:
        raise argparse.ArgumentTypeError(
            f"expected NAME@HOURS with NAME one of {', '.join(DRIFT_SCENARIOS)}, got {text!r}"
        )
    return name, float(hours)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mfg_assets.sim", description=__doc__)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--start", default="2026-11-01T00:00:00Z")
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--sensor-period", type=float, default=10.0)
    parser.add_argument("--unit-period", type=float, default=30.0)
    parser.add_argument("--image-period", type=float, default=60.0)
    parser.add_argument("--telemetry-period", type=float, default=60.0)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--fault-rate", type=float, default=0.8, help="faults/machine/day")
    parser.add_argument(
        "--drift",
        type=_drift,
        action="append",
        default=[],
        help="scenario switched on at hours into the run, e.g. material_lot@12",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    replay = sub.add_parser("replay", help="write messages.jsonl, ground_truth.jsonl, manifest")
    replay.add_argument("out_dir")
    live = sub.add_parser("publish", help="publish the stream to an MQTT broker")
    live.add_argument("broker_url", help="mqtt://[user:pass@]host[:port]")
    live.add_argument("--qos", type=int, default=1, choices=(0, 1, 2))
    live.add_argument(
        "--speed",
        type=float,
        default=None,
        help="simulated seconds per wall second (default: as fast as possible)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = SimConfig(
            seed=args.seed,
            start=args.start,
            duration_h=args.hours,
            sensor_period_s=args.sensor_period,
            unit_period_s=args.unit_period,
            image_period_s=args.image_period,
            telemetry_period_s=args.telemetry_period,
            image_size=args.image_size,
            fault_rate_per_day=args.fault_rate,
            drift=args.drift,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "replay":
        summary = write_replay(config, args.out_dir)
        print(f"{summary} -> {args.out_dir}")
    else:
        counts = publish(config, args.broker_url, qos=args.qos, speed=args.speed)
        print(f"published {counts['total']} messages: {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
