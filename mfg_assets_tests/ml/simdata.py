"""Simulated silver tables in memory: simulator -> gateway router -> silver typers.

The same path a replay file takes into the lakehouse (contract check, Sparkplug decoding,
silver typing and schema checks), without Delta in between, so model tests get realistic
frames in a second or two.
"""

from __future__ import annotations

import orjson
import polars as pl

from mfg_assets.gateway.routing import Router
from mfg_assets.lake.registry import table
from mfg_assets.lake.silver import TYPERS, refine, type_fault_labels
from mfg_assets.settings import get_settings
from mfg_assets.sim import SimConfig, ground_truth, iter_messages
from mfg_assets.uns.contract import load_contract


def simulate_silver(config: SimConfig) -> dict[str, pl.DataFrame]:
    """Every silver table of one simulated run, keyed by qualified name."""
    router = Router(load_contract(get_settings().contract_path), source="test:sim")
    for message in iter_messages(config):
        router.route(message.topic, message.payload, message.ts_ms)
    bronze = router.take("sim-batch").tables
    silver: dict[str, pl.DataFrame] = {}
    for name, (bronze_name, typer) in TYPERS.items():
        spec = table(name)
        if bronze_name not in bronze:
            silver[name] = spec.empty()
            continue
        result = refine(spec, typer(bronze[bronze_name]), run_id="sim")
        assert result.rejected.height == 0, result.rejected.get_column("reason").to_list()[:3]
        silver[name] = result.valid
    silver["silver.fault_labels"] = fault_labels(config)
    return silver


def fault_labels(config: SimConfig) -> pl.DataFrame:
    records = ground_truth(config)
    truth = pl.DataFrame(
        {
            "record_id": [str(i) for i in range(len(records))],
            "ingest_batch_id": ["truth"] * len(records),
            "kind": [r["kind"] for r in records],
            "record": [orjson.dumps(r).decode() for r in records],
        },
        schema=table("bronze.ground_truth").polars_schema,
    )
    return type_fault_labels(truth)
