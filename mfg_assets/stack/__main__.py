"""`python -m mfg_assets.stack up|down|scenario` (`make stack`, `make stack-down`)."""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from mfg_assets.settings import get_settings
from mfg_assets.stack.launch import DEFAULT_EDGES, Stack, StackConfig, stop_from_state

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "data" / "stack"
# The scenario `make stack` runs by default, the one its integration test checks: 12 h with
# 6 faults per machine-day gives every edge's model family fault windows in its hold-out.
# The press line is its Sparkplug B edge node: the gateway replicas subscribe to Sparkplug
# unshared (each is a host of its own), and edge-press1 is a Sparkplug host of its own too,
# scoring its node's DDATA live.
DEMO_HOURS = 12.0
DEMO_FAULT_RATE = 6.0
DEMO_SOURCES = ("welding", "press", "process", "images", "telemetry")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mfg_assets.stack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the stack, run the demo through it, wait")
    up.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="state folder")
    up.add_argument("--name", default="mfg", help="prefix of databases, roles, client ids")
    up.add_argument("--hours", type=float, default=DEMO_HOURS, help="simulated plant hours")
    up.add_argument("--seed", type=int, default=42)
    up.add_argument("--fault-rate", type=float, default=DEMO_FAULT_RATE,
                    help="fault onsets per machine per day")
    up.add_argument("--sources", nargs="+", default=list(DEMO_SOURCES),
                    help="simulator sources (add 'press' for Sparkplug B presses)")
    up.add_argument("--live-hours", type=float, default=1.0,
                    help="plant hours published after the bundles are out")
    up.add_argument("--no-demo", action="store_true", help="start the stack only")
    up.add_argument("--no-wait", action="store_true", help="stop after the demo (CI)")
    down = commands.add_parser("down", help="stop a running stack")
    down.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    down.add_argument("--purge", action="store_true",
                      help="also drop its databases and delete the state folder")
    down.add_argument("--name", default="mfg")
    env = commands.add_parser(
        "env", help="print `export` lines for a role: eval \"$(python -m mfg_assets.stack env "
        "analyst)\"; mfg sql '...' reads the stack's lake with the read-only identity")
    env.add_argument("role", choices=["analyst"])
    env.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    scenario = commands.add_parser("scenario", help="(internal) the demo, in the platform env")
    scenario.add_argument("--hours", type=float, required=True)
    scenario.add_argument("--seed", type=int, required=True)
    scenario.add_argument("--fault-rate", type=float, default=None)
    scenario.add_argument("--sources", nargs="+", default=None)
    scenario.add_argument("--live-hours", type=float, required=True)
    scenario.add_argument("--edges", nargs="+", required=True)
    args = parser.parse_args(argv)
    commands_run = {"up": _up, "down": _down, "env": _env, "scenario": _scenario}
    return commands_run[args.command](args)


def run_scenario_process(
    stack: Stack,
    hours: float,
    seed: int,
    live_hours: float,
    fault_rate: float | None = None,
    sources: list[str] | None = None,
) -> int:
    """The scenario in a child process with the platform's environment (and only that):
    the launcher itself never holds component credentials in its own environment."""
    log = stack.root / "logs" / "scenario.log"
    argv = [sys.executable, "-m", "mfg_assets.stack", "scenario", "--hours", str(hours),
            "--seed", str(seed), "--live-hours", str(live_hours),
            "--edges", *stack.config.edges]
    if fault_rate is not None:
        argv += ["--fault-rate", str(fault_rate)]
    if sources:
        argv += ["--sources", *sources]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, env=stack.scenario_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2])
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            out.flush()
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
        return proc.wait()


def _up(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def _signal(signum, frame) -> None:
        if stop.is_set():
            return  # already stopping
        stop.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _signal)
    stack = Stack(StackConfig(root=args.root, name=args.name, edges=DEFAULT_EDGES))
    code = 0
    try:
        print(f"starting the stack under {stack.root} ...", flush=True)
        stack.start()
        _print_where(stack)
        if not args.no_demo:
            t0 = time.perf_counter()
            code = run_scenario_process(
                stack, args.hours, args.seed, args.live_hours, args.fault_rate, args.sources
            )
            stack.timings["scenario_s"] = round(time.perf_counter() - t0, 1)
            stack.write_state()
            print(f"scenario {'done' if code == 0 else 'FAILED'} in "
                  f"{stack.timings['scenario_s']}s (log: {stack.root / 'logs'})")
            _print_where(stack)
        if not args.no_wait:
            print("running; Ctrl-C (or `make stack-down`) stops everything", flush=True)
            while not stop.wait(3600):
                pass
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    finally:
        stack.stop()
        stops = ", ".join(f"{k}={v}" for k, v in stack.timings.items() if k.startswith("stop_"))
        print(f"stack stopped ({stops})", flush=True)
    return code


def _print_where(stack: Stack) -> None:
    print(f"stack up in {stack.timings.get('start_total_s')}s "
          f"({', '.join(f'{k}={v}' for k, v in stack.timings.items())})")
    for name, url in stack.urls().items():
        print(f"  {name:28} {url}")
    print(f"  {'lakehouse':28} s3://lake/lake (SeaweedFS above)")
    print(f"  {'bundle store':28} s3://bundles/bundles")
    print(f"  {'postgres databases':28} {', '.join(stack.db.values())} on "
          f"{stack.config.pg_host}:{stack.config.pg_port}")
    print(f"  {'analysts (read-only lake)':28} eval \"$(python -m mfg_assets.stack env analyst"
          f"{'' if stack.root == DEFAULT_ROOT else f' --root {stack.root}'})\"; mfg sql '...'")
    print(f"  {'credentials (0600)':28} {stack.root / 'secrets'}")
    print(f"  {'logs':28} {stack.root / 'logs'}")
    print(f"  {'state':28} {stack.root / 'stack.json'}", flush=True)


def _down(args: argparse.Namespace) -> int:
    stopped = stop_from_state(args.root)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    if args.purge:
        from mfg_assets.stack import postgres

        stack = Stack(StackConfig(root=args.root, name=args.name))
        admin = get_settings().stack.pg_admin or (
            f"host={stack.config.pg_host} port={stack.config.pg_port} "
            f"user={stack.config.pg_admin_user} dbname=postgres")
        for database in stack.db.values():
            postgres.drop_database(admin, database)
        shutil.rmtree(args.root, ignore_errors=True)
        print(f"dropped {', '.join(stack.db.values())} and removed {args.root}")
    return 0


def _env(args: argparse.Namespace) -> int:
    from mfg_assets.stack.analyst import StackNotRunning, analyst_env, export_lines

    try:
        sys.stdout.write(export_lines(analyst_env(args.root.resolve())))
    except StackNotRunning as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def _scenario(args: argparse.Namespace) -> int:
    from mfg_assets.stack.scenario import run_scenario

    return run_scenario(
        args.hours, args.seed, args.live_hours, list(args.edges), fault_rate=args.fault_rate,
        sources=args.sources,
    )


if __name__ == "__main__":
    sys.exit(main())
