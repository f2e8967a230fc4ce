"""Cost: every wrapped materialization records what it used; ``monitoring/cost`` prices it.

:func:`with_cost` goes between ``@dg.asset`` and an asset body (one line per asset
factory): it measures CPU-seconds and wall time around the body and adds the bytes of the
Delta commit the body reports (``dagster/table_name`` + ``delta_version_written`` in its
metadata) as ``cost/*`` metadata. ``monitoring/cost`` reads those figures back from the
Dagster instance's materialization events and projects the month
(:mod:`mfg_assets.monitoring.cost`, plain Python).
"""

import functools
import inspect
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from mfg_assets.defs.metadata import table_metadata
from mfg_assets.defs.resources import LakehouseResource
from mfg_assets.lake.names import MONITORING_COST, SILVER_EDGE_PREDICTIONS, SILVER_INSPECTION_IMAGES
from mfg_assets.lake.registry import table
from mfg_assets.monitoring import cost as mc

OWNER = "team:operations"
COST_TABLE = MONITORING_COST
_DEFAULTS = mc.Prices()


def _lakehouse(args: tuple, kwargs: dict) -> LakehouseResource | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, LakehouseResource):
            return value
    return None


def with_cost(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate an asset body (under ``@dg.asset``) to add ``cost/*`` to its metadata.

    The body must return a ``MaterializeResult`` (or ``None``); the signature is kept
    (``functools.wraps``), so Dagster still injects context, config and resources.
    """
    if inspect.isgeneratorfunction(fn):
        raise TypeError("with_cost wraps bodies that return a MaterializeResult, not generators")

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with mc.measure() as usage:
            result = fn(*args, **kwargs)
        resource = _lakehouse(args, kwargs)
        lake = resource.lake() if resource is not None else None
        if result is None:
            return dg.MaterializeResult(metadata=mc.cost_metadata(usage, None, lake))
        if isinstance(result, dg.MaterializeResult):
            extra = mc.cost_metadata(usage, dict(result.metadata or {}), lake)
            return result._replace(metadata={**(result.metadata or {}), **extra})
        return result  # an output value: leave it alone rather than guess

    return wrapper


# -- reading the figures back ------------------------------------------------------------


def recorded_usage(instance: dg.DagsterInstance, since: datetime | None = None,
                   limit: int = 1000) -> pl.DataFrame:
    """One row per materialization that carries ``cost/*`` metadata (newest ``limit`` per
    asset): asset, layer, ts, cpu_s, wall_s, bytes_written."""
    rows = []
    for key in instance.get_asset_keys():
        records = instance.fetch_materializations(key, limit=limit).records
        for record in records:
            materialization = record.asset_materialization
            if materialization is None:
                continue
            meta = materialization.metadata
            if mc.CPU_S not in meta:
                continue
            ts = datetime.fromtimestamp(record.timestamp, UTC)
            if since is not None and ts < since:
                continue
            rows.append({
                "asset": key.to_user_string(), "layer": key.path[0], "ts": ts,
                "cpu_s": float(meta[mc.CPU_S].value),
                "wall_s": float(meta[mc.WALL_S].value),
                "bytes_written": int(meta[mc.BYTES_WRITTEN].value),
            })
    schema = {"asset": pl.String, "layer": pl.String, "ts": pl.Datetime("us", "UTC"),
              "cpu_s": pl.Float64, "wall_s": pl.Float64, "bytes_written": pl.Int64}
    return pl.DataFrame(rows, schema=schema)


class CostConfig(dg.Config):
    """Unit prices (USD) and sizing assumptions; defaults are public list prices, see
    :class:`mfg_assets.monitoring.cost.Prices` for where each comes from."""

    training_instance_hour_usd: float = Field(default=_DEFAULTS.training_instance_hour_usd,
                                              ge=0, description="GPU training instance-hour")
    inference_endpoint_hour_usd: float = Field(default=_DEFAULTS.inference_endpoint_hour_usd,
                                               ge=0, description="cloud inference endpoint-hour")
    compute_vcpu_hour_usd: float = Field(default=_DEFAULTS.compute_vcpu_hour_usd, ge=0,
                                         description="batch pipeline vCPU-hour")
    storage_gb_month_usd: float = Field(default=_DEFAULTS.storage_gb_month_usd, ge=0,
                                        description="object storage GB-month")
    egress_gb_usd: float = Field(default=_DEFAULTS.egress_gb_usd, ge=0,
                                 description="data transfer out per GB")
    edge_device_month_usd: float = Field(default=_DEFAULTS.edge_device_month_usd, ge=0,
                                         description="amortised edge device per month")
    endpoint_capacity_per_s: float = Field(default=_DEFAULTS.endpoint_capacity_per_s, gt=0)
    response_bytes: int = Field(default=_DEFAULTS.response_bytes, ge=0)
    retrain_runs_per_month: float | None = Field(
        default=None, ge=0, description="planned retraining runs; default: the observed cadence")
    window_days: float = Field(default=30.0, gt=0,
                               description="materializations of the last N days count")

    def prices(self) -> mc.Prices:
        fields = mc.Prices.__dataclass_fields__
        return mc.Prices(**{k: v for k, v in self.model_dump().items() if k in fields})


@dg.asset(
    key=dg.AssetKey(table(COST_TABLE).asset_key_path),
    deps=[dg.AssetKey(table(SILVER_EDGE_PREDICTIONS).asset_key_path),
          dg.AssetKey(table(SILVER_INSPECTION_IMAGES).asset_key_path)],
    group_name="monitoring",
    kinds={"polars", "delta"},
    owners=[OWNER],
    description="Projected monthly cost: pipeline compute, retraining cadence, storage growth, "
    "and cloud vs edge inference, from the CPU-seconds, wall time and bytes every "
    "materialization recorded, at configurable list prices (monitoring.cost).",
    metadata={"dagster/table_name": COST_TABLE},
)
def cost_asset(
    context: dg.AssetExecutionContext, config: CostConfig, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    lake = lakehouse.lake()
    since = datetime.now(UTC).timestamp() - config.window_days * 86400
    usage = recorded_usage(context.instance, datetime.fromtimestamp(since, UTC))
    lines = mc.project_lake(lake, usage, config.prices(), config.retrain_runs_per_month)
    spec = table(COST_TABLE)
    write = lake.overwrite(spec, mc.cost_frame(lines))
    meta = table_metadata(lake, spec, write)
    meta["materializations_priced"] = usage.height
    meta["cost_summary"] = dg.MetadataValue.md(mc.cost_markdown(lines))
    meta |= {f"usd_per_month/{k}": round(v, 2) for k, v in mc.totals(lines).items()}
    return dg.MaterializeResult(metadata=meta)


cost_assets = [cost_asset]
