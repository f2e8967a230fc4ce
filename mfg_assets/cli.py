"""`mfg ...`: the command line of mfg_assets.

Thin on purpose: each command parses arguments and calls plain functions elsewhere.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mfg_assets.lake.names import BRONZE_QUARANTINE


def main(argv: Sequence[str] | None = None) -> int:
    from mfg_assets.console import quiet_third_parties

    quiet_third_parties()
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except BrokenPipeError:  # `mfg sql ... | head`: the reader has what it wanted
        sys.stderr.close()
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mfg", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_simulate(commands)
    _add_demo(commands)
    _add_load(commands)
    _add_sql(commands)
    _add_tables(commands)
    _add_validate(commands)
    _add_import(commands)
    _add_gateway(commands)
    _add_edge(commands)
    _add_dashboard(commands)
    _add_label(commands)
    _add_train(commands)
    _finish_help(parser)
    return parser


# -- help texts: defaults and an example on every command -------------------------------

# One example per command (its `prog`), shown under its --help; test_cli_output.py checks
# that every command has one, so a new command comes with its example.
EXAMPLES: dict[str, str] = {
    "mfg": "mfg demo && mfg tables && mfg sql \"SELECT count(*) FROM silver.sensor_readings\"",
    "mfg simulate": "mfg simulate --hours 24 --seed 7 --out data/replay/run7",
    "mfg demo": "mfg demo --hours 24 --no-models",
    "mfg load": "mfg load --replay-dir data/replay",
    "mfg sql": "mfg sql \"SELECT machine_id, avg(value) FROM silver.sensor_readings GROUP BY ALL\""
    " --format csv",
    "mfg tables": "mfg tables",
    "mfg validate": "mfg validate acme/detroit/body/weld1/cell01/weld-01/sensors "
    "'{\"timestamp\": 1793491200000, \"machineType\": \"welder\", "
    "\"readings\": [{\"sensor\": \"current\", \"value\": 1.5}]}'",
    "mfg import": "mfg import images DIR --labels labels.csv",
    "mfg import images": "mfg import images data/images --labels data/images/labels.csv",
    "mfg import table": "mfg import table runs.parquet --as process_runs --label yield",
    "mfg gateway": "mfg gateway --broker mqtt://127.0.0.1:1883 --workers 2",
    "mfg edge": "mfg edge register --edge-id edge-cam01",
    "mfg dashboard": "mfg dashboard --out data/reports/dashboard.html",
    "mfg label": "mfg label --edge edge-cam01 --source-id img-42 --verdict confirm "
    "--operator badge-7",
    "mfg label serve": "mfg label serve --port 8060 --operator badge-7",
    "mfg train": "mfg train sensor_anomaly --budget 3",
}
EDGE_EXAMPLES: dict[str, str] = {  # the edge's own commands (mfg_assets/edge/cli.py)
    "keygen": "mfg edge keygen",
    "register": "mfg edge register --edge-id edge-cam01",
    "assign": "mfg edge assign --edge-id edge-cam01 --bundle-id BUNDLE_ID",
    "verify": "mfg edge verify data/bundles/bundles/BUNDLE_ID",
    "run": "mfg edge run --edge-id edge-cam01 --broker mqtt://127.0.0.1:1883",
}


class _HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default (unless its help already says it, or it has none);
    wraps paragraphs but keeps indented lines (the example) as they are."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks: list[str] = []
        for paragraph in text.split("\n\n"):
            lines = paragraph.splitlines()
            if any(line.startswith("  ") for line in lines):
                blocks.append("\n".join(indent + line for line in lines))
            else:
                blocks.append(super()._fill_text(" ".join(lines), width, indent))
        return "\n\n".join(blocks)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or "default" in text or default is None
                or default is False or default == [] or default is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += list(dict.fromkeys(action.choices.values()))
    return found


def _finish_help(parser: argparse.ArgumentParser) -> None:
    """Defaults and an example under every command's --help (sub-commands included)."""
    parser.formatter_class = _HelpFormatter
    for action in parser._actions:  # an option without help still shows its default
        default = action.default
        if action.option_strings and not action.help and default is not None \
                and default is not False:
            action.help = "default: %(default)s"
    example = EXAMPLES.get(parser.prog)
    if example is None and parser.prog.startswith("mfg edge "):
        example = EDGE_EXAMPLES.get(parser.prog.removeprefix("mfg edge "))
    if example and not parser.epilog:
        parser.epilog = f"example:\n  {example}"
    for sub in _subparsers(parser):
        _finish_help(sub)


def _add_sim_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hours", type=float, default=None,
                        help="simulated duration (default: 24; mfg demo: its own)")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed: the same seed, the same plant (default: 42)")
    parser.add_argument("--start", default=None,
                        help="start time, ISO 8601 (UTC) (default: 2026-11-01T00:00Z)")
    parser.add_argument(
        "--drift",
        action="append",
        default=[],
        metavar="NAME@HOURS",
        help="switch a drift scenario on after HOURS (e.g. camera_lighting@12)",
    )


def _add_simulate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("simulate", help="run the plant simulator")
    _add_sim_options(parser)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--out", default=None, help="write UNS replay files to this folder")
    target.add_argument("--broker", default=None, help="publish live, e.g. mqtt://127.0.0.1:1883")
    parser.add_argument(
        "--speed", type=float, default=None, help="live time factor (default: as fast as possible)"
    )
    parser.set_defaults(run=_run_simulate)


def _add_demo(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo", help="the whole lifecycle on a simulated plant: lakehouse, models, live edges, "
        "a canary rollout, drift, dashboard",
        description="Simulate a plant (with a misbehaving device) and run the whole lifecycle "
        "in named Dagster jobs (demo_bronze, demo_silver, demo_train, ...): bronze/silver with "
        "quarantine, features, champions behind their gates, signed bundles, live edge "
        "runtimes on a private broker whose predictions flow back through a gateway, a second "
        "model version as a canary decided from its evidence, drift on the newer day, "
        "inspection statistics, cost and the dashboard. Prints each step's time.",
    )
    _add_sim_options(parser)
    parser.add_argument("--broker", default=None,
                        help="go through MQTT: publish live and land via the gateway")
    parser.add_argument(
        "--no-models",
        action="store_true",
        help="stop after silver (skip features, models, bundles, rollouts)",
    )
    parser.add_argument(
        "--families", default=None, metavar="A,B",
        help="model families to train (default: sensor_anomaly,process_yield; the others "
        "take minutes each on a small machine: `mfg train FAMILY`)",
    )
    parser.add_argument("--no-live", action="store_true",
                        help="skip the live edges and the canary (no mosquitto needed)")
    parser.add_argument(
        "--scenario",
        choices=["drift"],
        default=None,
        help="drift: the closed loop, run by the Dagster daemon (drift -> retrain -> bundle "
        "-> canary -> promoted) with its stage timeline and time to recover",
    )
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="--scenario drift: seconds to wait for the promotion")
    parser.set_defaults(run=_run_demo)


def _add_load(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("load", help="load pending replay files into bronze")
    parser.add_argument("--replay-dir", default=None,
                        help="folder of replay files (default: MFG_REPLAY_DIR or data/replay)")
    parser.set_defaults(run=_run_load)


def _add_sql(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "sql",
        help="query the lakehouse with DuckDB (layer.table), read-only and sandboxed",
        description="Query every lakehouse table as layer.table. The connection is "
        "sandboxed: no file reads or writes outside the registered tables (read_text, "
        "read_csv, COPY ... TO, ATTACH), no INSTALL/LOAD, and its configuration is locked.",
    )
    parser.add_argument("query", help="DuckDB SQL over layer.table names (see mfg tables)")
    parser.add_argument(
        "--format", choices=["auto", "table", "csv", "json"], default="auto",
        help="auto: a table on a terminal, CSV when the output goes to a pipe or file",
    )
    parser.add_argument("--max-rows", type=int, default=50, help="rows shown as a table")
    parser.set_defaults(run=_run_sql)


def _add_tables(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "tables", help="list lakehouse tables: rows, size, Delta version, last commit",
        description="Every table of the lake registry: its rows, the size of its current "
        "files, its Delta version and when that version was committed (UTC).",
    )
    parser.set_defaults(run=_run_tables)


def _add_validate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("validate", help="validate one message against the contract")
    parser.add_argument("topic")
    parser.add_argument(
        "payload",
        help="the payload: text, @FILE, or base64:... / hex:... (binary, e.g. Sparkplug B)",
    )
    parser.add_argument("--contract", default=None, help="AsyncAPI file (default: the plant's)")
    parser.set_defaults(run=_run_validate)


def _add_gateway(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("gateway", help="run the MQTT -> lakehouse gateway service")
    parser.add_argument("--broker", default=None, help="mqtt://[user:pass@]host:port or mqtts://")
    parser.add_argument("--contract", default=None, help="AsyncAPI file (default: the plant's)")
    parser.add_argument("--topics", nargs="+", default=None, help="MQTT topic filters")
    parser.add_argument(
        "--share-group",
        default="mfg-gateway",
        help="shared-subscription group ('' for a plain subscription)",
    )
    parser.add_argument(
        "--client-id",
        default=None,
        help="stable per replica, the same across restarts (k8s: the StatefulSet pod name); "
        "a new id leaves the old session's share of the traffic stranded on the broker",
    )
    parser.add_argument(
        "--session-expiry",
        type=int,
        default=None,
        help="seconds the broker keeps this replica's session and queues its share while it "
        "is offline; discarded after (default 3600, see deploy/README.md)",
    )
    parser.add_argument(
        "--drain",
        action="store_true",
        help="for a replica removed for good: land what the broker queued for --client-id, "
        "leave the shared subscription and end the session, then exit",
    )
    parser.add_argument("--batch-interval", type=float, default=1.0, help="seconds per micro-batch")
    parser.add_argument("--batch-max", type=int, default=5000, help="messages per micro-batch")
    parser.add_argument(
        "--receive-maximum",
        type=int,
        default=None,
        help="MQTT v5 in-flight window (default: --batch-max)",
    )
    parser.add_argument("--metrics-port", type=int, default=9108, help="0 disables /metrics")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="route and commit in N worker processes (partitioned by Sparkplug edge node)",
    )
    parser.add_argument("--log-level", default="INFO")
    parser.set_defaults(run=_run_gateway)


def _add_import(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "import", help="bring your own data: tables and labelled images into silver"
    )
    kinds = parser.add_subparsers(dest="kind", required=True)
    images = kinds.add_parser("images", help="a folder of PNG/JPEG images with a labels file")
    images.add_argument("directory", help="folder with the image files")
    images.add_argument(
        "--labels",
        required=True,
        help="CSV/Parquet: file, label [, ts, camera, unit_id, line, cell, edge]; other "
        "columns are kept as attributes of each image's bronze message",
    )
    images.add_argument("--earliest", default="2000-01-01", metavar="DATE",
                        help="refuse timestamps before this (default 2000-01-01; the latest "
                        "allowed is now + 1 day)")
    images.add_argument("--boxes", default=None, metavar="PATH",
                        help="part boxes: a COCO JSON file, or a YOLO folder (classes.txt + "
                        "one <image stem>.txt per image)")
    images.add_argument("--box-format", choices=("coco", "yolo"), default="coco")
    images.set_defaults(run=_run_import_images)
    tab = kinds.add_parser(
        "table", help="a CSV or Parquet table",
        description="Columns. --as process_runs: required the --label column (a yield in "
        "percent, or pass/fail); optional unit_id (default: the row number), ts (default: "
        "the import time, which is no time axis: training then splits stratified), "
        "machine_id, product, material_lot, site, area, line, cell; every other column is a "
        "numeric process parameter. --as sensor_readings: long form machine_id, sensor, ts, "
        "value [, unit], or wide form machine_id, ts and one numeric column per sensor; "
        "optional machine_type, site, area, line, cell. Everything is checked before "
        "anything is written.")
    tab.add_argument("file")
    tab.add_argument(
        "--as",
        dest="target",
        required=True,
        choices=["process_runs", "sensor_readings"],
        help="the silver table",
    )
    tab.add_argument(
        "--label", default=None, help="process_runs: the yield (%%) or pass/fail column"
    )
    tab.add_argument(
        "--pass-threshold",
        type=float,
        default=90.0,
        help="process_runs: a yield at or above it passes (default 90)",
    )
    tab.add_argument(
        "--ignore", nargs="*", default=[], metavar="COLUMN", help="columns to leave out"
    )
    tab.add_argument("--earliest", default="2000-01-01", metavar="DATE",
                     help="refuse timestamps before this (default 2000-01-01; the latest "
                     "allowed is now + 1 day)")
    tab.set_defaults(run=_run_import_table)


# -- command bodies (imports inside: `mfg --help` stays instant) ------------------------


def _sim_config(args: argparse.Namespace):
    from mfg_assets.sim import SimConfig

    options: dict = {}
    if args.hours is not None:
        options["duration_h"] = args.hours
    if args.seed is not None:
        options["seed"] = args.seed
    if args.start is not None:
        options["start"] = args.start
    drift = []
    for item in args.drift:
        name, _, hours = item.partition("@")
        try:
            drift.append((name, float(hours or 0)))
        except ValueError:
            message = f"--drift {item!r}: expected NAME@HOURS, e.g. camera_lighting@12"
            raise SystemExit(message) from None
    return SimConfig(drift=tuple(drift), **options)


def _run_simulate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mfg_assets.console import progress
    from mfg_assets.settings import get_settings
    from mfg_assets.sim import publish, write_replay

    config = _sim_config(args)
    if args.broker:
        with progress(f"publishing {config.duration_h:g} simulated h to {args.broker}") as bar:
            counts = publish(config, args.broker, speed=args.speed, on_progress=bar.step)
        print(f"published {counts} to {args.broker}")
        return 0
    out = Path(args.out) if args.out else get_settings().replay_dir / f"sim-{config.seed}"
    with progress(f"simulating {config.duration_h:g} h of the plant") as bar:
        summary = write_replay(config, out, on_progress=bar.step)
    print(f"wrote {summary} to {out}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    if args.scenario == "drift":
        return _run_loop(args)
    from mfg_assets.demo import DEMO_FAMILIES, DEMO_HOURS, demo_start, run_demo
    from mfg_assets.ml.families import FAMILIES

    if args.hours is None:
        args.hours = DEMO_HOURS
    if args.start is None:  # the live hours end now: one timeline with the edges' clocks
        args.start = demo_start(args.hours).isoformat()
    families = tuple(f for f in (args.families or "").split(",") if f) or DEMO_FAMILIES
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        print(f"mfg demo: unknown families {unknown}; known: {', '.join(FAMILIES)}",
              file=sys.stderr)
        return 2
    return run_demo(_sim_config(args), broker_url=args.broker, with_models=not args.no_models,
                    families=families, live=not args.no_live)


def _run_loop(args: argparse.Namespace) -> int:
    from mfg_assets.loop.run import report, run_loop
    from mfg_assets.loop.scenario import LoopConfig

    options: dict = {"timeout_s": args.timeout, "broker_url": args.broker}
    if args.seed is not None:
        options["seed"] = args.seed
    if args.hours is not None:
        options["history_h"] = args.hours
    result = run_loop(LoopConfig(**options))
    report(result)
    return 0 if result.recovered else 1


def _run_load(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mfg_assets.console import progress
    from mfg_assets.gateway.replay import load_pending
    from mfg_assets.lake.delta import Lake
    from mfg_assets.lake.registry import table
    from mfg_assets.settings import get_settings
    from mfg_assets.uns.contract import load_contract

    settings = get_settings()
    replay_dir = Path(args.replay_dir) if args.replay_dir else settings.replay_dir
    lake = Lake()
    with progress(f"loading {replay_dir} into bronze", unit="bytes") as bar:
        reports = load_pending(lake, replay_dir, load_contract(settings.contract_path),
                               settings.enterprise, on_progress=bar.step)
    # nothing refused is still an answer: `SELECT ... FROM bronze.quarantine` gets 0 rows,
    # not "table does not exist"
    lake.ensure(table(BRONZE_QUARANTINE))
    for report in reports:
        print(
            f"{report.file}: {report.received} received, {report.valid} valid, "
            f"{report.invalid} quarantined"
        )
    if not reports:
        print(f"nothing new under {replay_dir}")
    return 0


def _run_sql(args: argparse.Namespace) -> int:
    import warnings

    import duckdb

    from mfg_assets.console import write_frame
    from mfg_assets.lake.catalog import connect

    with warnings.catch_warnings(record=True) as skipped:
        warnings.simplefilter("always")
        con = connect()  # sandboxed: no file access, no extensions, configuration locked
    for warning in skipped:
        print(f"warning: {warning.message}", file=sys.stderr)
    try:
        frame = con.sql(args.query).pl()
    except duckdb.Error as exc:
        print(f"query failed: {exc}", file=sys.stderr)
        return 2
    finally:
        con.close()
    write_frame(frame, args.format, args.max_rows)
    return 0


def _run_tables(args: argparse.Namespace) -> int:
    from mfg_assets.lake.delta import Lake
    from mfg_assets.lake.registry import tables

    lake = Lake()
    broken = 0
    for spec in tables():
        try:
            if not lake.exists(spec):
                print(f"{spec.qualified_name:28} (not created yet)")
                continue
            line = _table_line(lake, spec)
        except Exception as exc:  # one broken Delta log must not hide the other tables
            broken += 1
            print(f"{spec.qualified_name:28} (cannot be opened: {exc})")
            continue
        print(line)
    return 1 if broken else 0


def _table_line(lake, spec) -> str:
    """name, rows, size of the current files, Delta version and its commit time (UTC)."""
    from datetime import UTC, datetime

    import pyarrow as pa
    import pyarrow.compute as pc

    from mfg_assets.console import human_bytes

    delta = lake.table(spec)
    files = pa.table(delta.get_add_actions(flatten=True))
    size = pc.sum(files.column("size_bytes")).as_py() or 0 if files.num_rows else 0
    last = delta.history(1)[0]
    when = datetime.fromtimestamp(last["timestamp"] / 1000, UTC).strftime("%Y-%m-%d %H:%M")
    return (f"{spec.qualified_name:28} rows={lake.row_count(spec):>10}  "
            f"size={human_bytes(size):>10}  version={delta.version():<5} "
            f"committed={when}Z")


def _run_validate(args: argparse.Namespace) -> int:
    from mfg_assets.gateway.explain import explain, read_payload
    from mfg_assets.settings import get_settings
    from mfg_assets.uns.contract import load_contract

    contract = load_contract(args.contract or get_settings().contract_path)
    try:
        payload = read_payload(args.payload)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}")
        return 2
    result, errors = explain(contract, args.topic, payload)
    if errors:
        for error in errors:
            print(error)
        return 1
    channel = result.channel
    print(f"valid: channel {channel.id} ({channel.address}), message {result.message}")
    return 0


def _run_gateway(args: argparse.Namespace) -> int:
    import logging

    from mfg_assets.gateway.config import DEFAULT_TOPICS, GatewayConfig
    from mfg_assets.gateway.service import Gateway
    from mfg_assets.lake.delta import Lake
    from mfg_assets.settings import get_settings
    from mfg_assets.uns.contract import load_contract

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = get_settings()
    options = {}
    if args.client_id:
        options["client_id"] = args.client_id
    if args.session_expiry is not None:
        options["session_expiry_s"] = args.session_expiry
    config = GatewayConfig(
        broker_url=args.broker or settings.broker_url,
        topics=tuple(args.topics or DEFAULT_TOPICS),
        share_group=args.share_group or None,
        batch_interval_s=args.batch_interval,
        batch_max_messages=args.batch_max,
        receive_maximum=args.receive_maximum or 2 * args.batch_max,
        metrics_port=args.metrics_port or None,
        workers=args.workers,
        **options,
    )
    source = args.contract or settings.contract_path
    if args.drain:
        from mfg_assets.gateway.drain import drain

        if not args.client_id:
            print("--drain needs the removed replica's --client-id", file=sys.stderr)
            return 2
        landed = drain(config, load_contract(source), Lake(), settings.enterprise)
        print(f"drained {config.client_id}: {landed} messages landed, session ended")
        return 0
    gateway = Gateway(
        config, load_contract(source), Lake(), settings.enterprise, contract_source=source
    )
    gateway.run_forever()
    return 0


def _import_window(args: argparse.Namespace):
    from datetime import UTC, datetime

    from mfg_assets.lake.silver import PlausibleWindow

    try:
        earliest = datetime.fromisoformat(args.earliest)
    except ValueError:
        raise SystemExit(f"--earliest {args.earliest!r}: expected an ISO date") from None
    return PlausibleWindow(earliest=earliest.replace(tzinfo=earliest.tzinfo or UTC))


def _run_import_images(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mfg_assets.console import progress
    from mfg_assets.lake.delta import Lake
    from mfg_assets.lake.importers import ImportRefused, import_images

    try:
        with progress(f"importing images from {args.directory}") as bar:
            report = import_images(Lake(), Path(args.directory), Path(args.labels),
                                   window=_import_window(args),
                                   boxes=Path(args.boxes) if args.boxes else None,
                                   box_format=args.box_format, on_progress=bar.step)
    except ImportRefused as exc:
        print(f"import refused, nothing written: {exc}", file=sys.stderr)
        return 2
    print(report)
    return 0


def _run_import_table(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mfg_assets.console import progress
    from mfg_assets.lake.delta import Lake
    from mfg_assets.lake.importers import (
        ImportRefused,
        import_process_runs,
        import_sensor_readings,
    )

    if args.target == "process_runs" and not args.label:
        print("--as process_runs needs --label COLUMN", file=sys.stderr)
        return 2
    try:
        with progress(f"importing {args.file} into silver.{args.target}") as bar:
            if args.target == "process_runs":
                report = import_process_runs(
                    Lake(),
                    Path(args.file),
                    args.label,
                    pass_threshold=args.pass_threshold,
                    ignore=args.ignore,
                    window=_import_window(args),
                    on_progress=bar.step,
                )
            else:
                report = import_sensor_readings(Lake(), Path(args.file), ignore=args.ignore,
                                                window=_import_window(args),
                                                on_progress=bar.step)
    except ImportRefused as exc:
        print(f"import refused, nothing written: {exc}", file=sys.stderr)
        return 2
    print(report)
    return 0


# -- mfg train FAMILY ------------------------------------------------------------------


def _add_train(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train", help="train a model family on the lakehouse and run its promotion gate",
        description="Materialize the family's feature table, its challenger (with the "
        "blocking promotion gate) and its champion, then print the split, the baselines, the "
        "metrics and the verdict. Exit code 0: promoted (or waiting for evidence, with a "
        "note); 2: refused; 1: the run failed otherwise.",
    )
    parser.add_argument("family", help="model family (see ml/families.py)")
    parser.add_argument("--budget", type=int, default=1, help="hyper-parameter trials")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ephemeral", action="store_true",
                        help="an ephemeral Dagster instance instead of DAGSTER_HOME's")
    parser.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    import dagster as dg

    from mfg_assets import plan
    from mfg_assets.defs.features import feature_key
    from mfg_assets.defs.models import GATE, TrainConfig, champion_key, model_key
    from mfg_assets.demo import ensure_dagster_home
    from mfg_assets.ml.families import FAMILIES, spec
    from mfg_assets.settings import get_settings

    if args.family not in FAMILIES:
        print(f"mfg train: unknown family {args.family!r}; known: {', '.join(FAMILIES)}",
              file=sys.stderr)
        return 2
    entry, key = spec(args.family), model_key(args.family)
    if args.ephemeral:
        instance = dg.DagsterInstance.ephemeral()
    else:
        ensure_dagster_home(get_settings())
        instance = dg.DagsterInstance.get()
    selection = dg.AssetSelection.assets(feature_key(entry.feature_table), key,
                                         champion_key(args.family))
    # the summary below says what happened: a refused gate is a verdict, not a stack trace
    config = dg.RunConfig(ops={key.to_python_identifier(): TrainConfig(
        budget=args.budget, seed=args.seed)}, **plan.SILENT)
    from mfg_assets.console import progress

    steps = {feature_key(entry.feature_table).to_python_identifier(): "features",
             key.to_python_identifier(): "challenger and gate",
             champion_key(args.family).to_python_identifier(): "champion"}
    with progress(f"training {args.family}") as bar:
        result = plan.Runner(instance, plan.resources()).run(
            plan.TRAIN, selection=selection, run_config=config, raise_on_error=False,
            on_event=train_progress(steps, bar.step))[0]
    checks = [c for c in result.get_asset_check_evaluations() if c.check_name == GATE]
    if not checks:  # the challenger never got to its gate: say why in one line
        failed = [e for e in result.all_events if e.is_step_failure]
        error = failed[0].step_failure_data.error if failed else None
        why = (error.message.strip().splitlines() or ["?"])[-1] if error else "no gate ran"
        why = why.removeprefix("dagster._core.definitions.events.Failure: ")
        print(f"mfg train {args.family}: failed before the gate: {why}", file=sys.stderr)
        return 2 if why and "cannot split" in why else 1
    for line in _train_summary(result, key, checks[0]):
        print(line)
    verdict = checks[0].metadata["verdict"].value
    return 2 if verdict == "refused" else 0


def train_progress(steps: dict[str, str], on_progress: Callable[[str, int, int], None]
                   ) -> Callable[[Any], None]:
    """A Dagster event listener that reports ``steps`` (step key -> what a person calls it)
    as they start and finish: ``on_progress(step, finished, len(steps))``."""
    finished: set[str] = set()
    ends = {"STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"}

    def on_event(entry: Any) -> None:
        event = entry.dagster_event
        if event is None or event.step_key not in steps:
            return
        if event.event_type_value in ends:
            finished.add(event.step_key)
        elif event.event_type_value != "STEP_START":
            return
        on_progress(steps[event.step_key], len(finished), len(steps))

    return on_event


def _train_summary(result, key, check) -> list[str]:
    """A few lines: the split, the metrics, the baselines and the gate's verdict."""
    meta = next(m for m in result.asset_materializations_for_node(key.to_python_identifier())
                if m.asset_key == key).metadata
    split = meta["split_parts"].value if "split_parts" in meta else {}
    parts = ", ".join(
        f"{name} {part['rows']}" + (" (" + ", ".join(f"{c} {n}" for c, n in part.get(
            "classes", {}).items()) + ")" if part.get("classes") else "")
        for name, part in split.get("parts", {}).items())
    held = {k.removeprefix("holdout/"): v.value for k, v in meta.items()
            if k.startswith("holdout/")}
    own = ", ".join(f"{k}={v:.3g}" for k, v in held.items()
                    if not k.startswith("baseline.") and isinstance(v, float))
    base = ", ".join(f"{k.removeprefix('baseline.')}={v:.3g}" for k, v in held.items()
                     if k.startswith("baseline.") and isinstance(v, float))
    verdict = check.metadata["verdict"].value
    lines = [f"{key.path[-1]} v{meta['model_version'].value}: split "
             f"{split.get('method', '?')}: {meta['split'].value if 'split' in meta else ''}",
             f"  parts: {parts}" if parts else "", f"  metrics: {own}"]
    lines += [f"  baselines: {base}"] if base else []
    lines += [f"  notes: {'; '.join(split['notes'])}"] if split.get("notes") else []
    lines.append(f"  gate {verdict}: {check.metadata['reason'].value}")
    if verdict == "waiting":
        lines.append("  note: the champion stays until the drifted segment has evidence")
    return [line for line in lines if line]


# -- mfg edge ... (bundles, assignments, the edge runtime) --------------------------------------


def _add_edge(commands: argparse._SubParsersAction) -> None:
    # the same commands as the device's own `mfg-edge` (mfg_assets/edge/cli.py); here
    # `register` also knows the simulator plant's edges
    from mfg_assets.edge import cli as edge_cli

    edge = commands.add_parser("edge", help="edge devices: register, assign, verify, run")
    sub = edge.add_subparsers(dest="edge_command", required=True)
    edge_cli.add_commands(sub, default_device=_sim_device)


def _sim_device(edge_id: str):
    """The simulator plant's idea of an edge: its cell, and the cameras/machines it serves."""
    from mfg_assets.edge.store import Device
    from mfg_assets.sim.config import PlantLayout

    plant = PlantLayout()
    edge = next((e for e in plant.edges if e.edge_id == edge_id), None)
    if edge is None:
        return None
    place = {"enterprise": plant.enterprise, "site": plant.site, "area": edge.area,
             "line": edge.line, "cell": edge.cell}
    prefix = f"{plant.enterprise}/{plant.site}/{edge.area}/{edge.line}"
    if edge.kind == "camera":
        cameras = [c.camera_id for c in plant.cameras if c.cell == edge.cell]
        sources = tuple(f"{prefix}/{edge.cell}/{cam}/inspection" for cam in cameras)
    else:
        sources = (f"{prefix}/+/+/sensors",)
        if (edge.area, edge.line) == (plant.press_area, plant.press_line):
            from mfg_assets.edge.sparkplug_input import node_filter  # the line's Sparkplug node

            sources += (node_filter(plant.sparkplug_group, plant.edge_node),)
    return Device(edge_id, edge.kind, place, sources, firmware=f"mfg-edge/{edge.firmware}")


def _add_dashboard(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "dashboard", help="serve the operations dashboard: line health, compliance on event "
        "time, inspection statistics, drift, rollouts, cost (or write it to an HTML file)",
        description="Serve the operations dashboard. It has no authentication and no TLS: it "
        "answers only to Host names it knows (loopback, the bound address, --allow-host) and "
        "caches the page until a table it reads changes.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="bind address (default: local only). The page shows plant figures to anyone who "
        "reaches it, with no login and no TLS: for --host 0.0.0.0 put it behind a reverse "
        "proxy that authenticates users and terminates TLS, and name the proxy's host with "
        "--allow-host",
    )
    parser.add_argument("--port", type=int, default=8050)
    parser.add_argument(
        "--allow-host", action="append", default=[], metavar="NAME",
        help="also answer to this Host header name (e.g. the reverse proxy's); others get 421",
    )
    parser.add_argument("--out", default=None, metavar="FILE.html",
                        help="write the page to FILE.html once instead of serving it")
    parser.set_defaults(run=_run_dashboard)


def _run_dashboard(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mfg_assets.monitoring import dashboard

    if args.out:
        print(dashboard.write_report(Path(args.out)))
        return 0
    dashboard.serve(host=args.host, port=args.port, extra_hosts=args.allow_host)
    return 0



def _add_label(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "label", help="record an operator's verdict on an edge prediction (or serve the page)",
        description="Record a verdict (confirm, reject or a class label) on one edge "
        "prediction: published to the broker with --broker, else appended to bronze.feedback "
        "directly. `mfg label serve` serves the local labeling page instead.",
    )
    parser.add_argument("--edge", help="edge id that made the prediction")
    parser.add_argument("--source-id", help="the prediction's sourceId (image id, window id)")
    parser.add_argument("--verdict", help="confirm, reject, or a class label")
    parser.add_argument("--operator", help="who gives the verdict (badge or user id)")
    parser.add_argument("--model", default=None, help="model name (when several scored it)")
    parser.add_argument("--bundle", default=None, help="bundle id (default: the prediction's)")
    parser.add_argument("--place", default=None, metavar="ENT/SITE/AREA/LINE/CELL",
                        help="ISA-95 place of the edge (default: the prediction's)")
    parser.add_argument("--comment", default=None)
    parser.add_argument("--broker", default=None, metavar="URL",
                        help="publish to this broker (mqtt[s]://...) instead of writing bronze")
    parser.set_defaults(run=_run_label)
    sub = parser.add_subparsers(dest="label_command")
    serve = sub.add_parser("serve", help="serve the labeling page (flagged and least certain "
                           "predictions first)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="bind address (default: local only; the page has no login)")
    serve.add_argument("--port", type=int, default=8060)
    serve.add_argument("--operator", default="", help="operator id prefilled in the forms")
    serve.add_argument("--broker", default=None, metavar="URL",
                       help="publish verdicts to this broker instead of writing bronze")
    serve.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help="also answer to this Host header name; others get 421")
    serve.set_defaults(run=_run_label_serve)


def _label_recorder(broker: str | None):
    from mfg_assets.labeling import store
    from mfg_assets.lake.delta import Lake
    from mfg_assets.settings import get_settings
    from mfg_assets.uns.contract import load_contract

    contract = load_contract(get_settings().contract_path)
    if broker:
        return lambda verdict: store.publish_verdict(broker, contract, verdict)
    lake = Lake()
    return lambda verdict: store.append_verdict(lake, contract, verdict)


def _run_label(args: argparse.Namespace) -> int:
    from mfg_assets.labeling import store
    from mfg_assets.lake.delta import Lake

    missing = [f"--{n}" for n in ("edge", "source-id", "verdict", "operator")
               if not getattr(args, n.replace("-", "_"))]
    if missing:
        print(f"mfg label: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        if args.place and args.bundle and args.model:
            place = args.place.split("/")
            if len(place) != 5:
                raise store.VerdictRefused("--place is ENTERPRISE/SITE/AREA/LINE/CELL")
            prediction = {**dict(zip(store.PLACE, place, strict=True)), "model": args.model}
        else:
            prediction = store.find_prediction(Lake(), args.edge, args.source_id, args.model)
        prediction |= {"edge_id": args.edge, "source_id": args.source_id,
                       "bundle_id": args.bundle or prediction["bundle_id"]}
        verdict = store.verdict_for(prediction, args.verdict, args.operator, args.comment)
        _label_recorder(args.broker)(verdict)
    except (store.VerdictRefused, OSError, TimeoutError) as exc:
        print(f"mfg label: {exc}", file=sys.stderr)
        return 2
    print(f"{verdict.verdict} by {verdict.operator_id} on {verdict.topic} {verdict.source_id}")
    return 0


def _run_label_serve(args: argparse.Namespace) -> int:
    from mfg_assets.labeling import page
    from mfg_assets.lake.delta import Lake

    server = page.make_server(Lake(), _label_recorder(args.broker), args.host, args.port,
                              operator=args.operator, extra_hosts=args.allow_host)
    page.serve(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
