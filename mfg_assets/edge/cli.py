"""`mfg-edge ...`: the edge device's command line (run, verify, keygen, register, assign).

Installed by ``pip install 'mfg_assets[edge]'`` without torch, Dagster or polars; the
platform's ``mfg edge ...`` is the same commands (it adds a simulator default to
``register``). Imports happen inside the commands, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

STORE_HELP = "bundle store URI (default: MFG_BUNDLE_STORE or data/bundles)"

# edge id -> Device (or None): where `register` finds an edge given without --place
DeviceDefault = Callable[[str], Any]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mfg-edge", description=__doc__)
    add_commands(parser.add_subparsers(dest="edge_command", required=True))
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


def add_commands(
    sub: argparse._SubParsersAction, default_device: DeviceDefault | None = None
) -> None:
    run = sub.add_parser("run", help="run the edge inference service")
    run.add_argument("--edge-id", required=True)
    run.add_argument("--broker", default=None, help="e.g. mqtt://127.0.0.1:1883")
    run.add_argument("--bundle-store", default=None, help=STORE_HELP)
    run.add_argument("--poll", type=float, default=5.0, help="assignment poll period, seconds")
    run.add_argument("--heartbeat", type=float, default=30.0, help="telemetry period, seconds")
    run.add_argument("--log-level", default="info")
    run.set_defaults(run=run_edge)

    register = sub.add_parser("register", help="register an edge: its place and source topics")
    register.add_argument("--edge-id", required=True)
    register.add_argument("--kind", choices=("camera", "assembly", "line"), default=None)
    register.add_argument("--place", default=None, metavar="ENT/SITE/AREA/LINE/CELL")
    register.add_argument("--source", action="append", default=[], metavar="TOPIC_FILTER")
    register.add_argument("--bundle-store", default=None, help=STORE_HELP)
    register.set_defaults(run=run_register, default_device=default_device)

    assign = sub.add_parser("assign", help="assign a bundle to an edge")
    assign.add_argument("--edge-id", required=True)
    assign.add_argument("--bundle-id", required=True)
    assign.add_argument("--bundle-store", default=None, help=STORE_HELP)
    assign.set_defaults(run=run_assign)

    verify = sub.add_parser("verify", help="verify a bundle folder's signature and checksums")
    verify.add_argument("path")
    verify.add_argument("--public-key", default=None)
    verify.set_defaults(run=run_verify)

    keygen = sub.add_parser("keygen", help="generate an Ed25519 bundle signing keypair")
    keygen.add_argument("--out", default=None, help="folder (default: data/keys)")
    keygen.set_defaults(run=run_keygen)


def run_edge(args: argparse.Namespace) -> int:
    import logging

    from mfg_assets.edge.runtime import EdgeRuntime, RuntimeConfig
    from mfg_assets.settings import get_settings

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = RuntimeConfig(
        edge_id=args.edge_id,
        broker_url=args.broker or get_settings().broker_url,
        store_uri=args.bundle_store,
        poll_s=args.poll,
        heartbeat_s=args.heartbeat,
    )
    try:
        runtime = EdgeRuntime(config)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    runtime.run_forever()
    return 0


def run_register(args: argparse.Namespace) -> int:
    from mfg_assets.edge.store import PLACE, BundleStore, Device

    if args.place:
        values = args.place.split("/")
        if len(values) != len(PLACE) or not args.source or not args.kind:
            print("--place needs 5 levels, plus --kind and at least one --source",
                  file=sys.stderr)
            return 2
        device = Device(args.edge_id, args.kind, dict(zip(PLACE, values, strict=True)),
                        tuple(args.source))
    else:
        found = args.default_device(args.edge_id) if args.default_device else None
        if found is None:
            print(f"{args.edge_id} is not a known edge: give --kind, --place and --source",
                  file=sys.stderr)
            return 2
        device = found
    store = BundleStore(args.bundle_store)
    store.register(device)
    print(f"registered {device.edge_id} ({device.kind}) at {'/'.join(device.place.values())} "
          f"listening to {', '.join(device.sources)} in {store.uri}")
    return 0


def run_assign(args: argparse.Namespace) -> int:
    from mfg_assets.edge.bundle import BundleError
    from mfg_assets.edge.store import BundleStore

    store = BundleStore(args.bundle_store)
    try:
        store.assign(args.edge_id, args.bundle_id, by="cli")
    except (FileNotFoundError, BundleError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{args.edge_id} -> {args.bundle_id}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mfg_assets.edge.bundle import BundleError, verify_bundle
    from mfg_assets.edge.signing import load_public_key

    try:
        bundle = verify_bundle(Path(args.path), load_public_key(args.public_key))
    except BundleError as exc:
        print(f"REFUSED: {exc}", file=sys.stderr)
        return 1
    model = bundle.manifest["model"]
    print(f"ok: {bundle.bundle_id} ({model['name']} v{model['version']}, "
          f"{model.get('precision', 'fp32')}, threshold {bundle.threshold:.4g})")
    return 0


def run_keygen(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mfg_assets.edge.signing import dev_key_dir, generate_keypair

    directory = Path(args.out) if args.out else dev_key_dir()
    try:
        private, public = generate_keypair(directory)
    except FileExistsError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"private key {private} (keep secret; MFG_EDGE_SIGNING_KEY)\n"
          f"public key  {public} (give to edges; MFG_EDGE_PUBLIC_KEY)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
