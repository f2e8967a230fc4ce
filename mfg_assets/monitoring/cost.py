"""What a materialization costs, and what the month will cost.

Two halves, both plain Python:

- :func:`measure` wraps a body and records process CPU-seconds (this process and its
  waited-for children, from ``getrusage``) and wall time; :func:`delta_bytes_written` sums the
  sizes of the files a Delta commit added. The Dagster layer puts the three figures in
  the materialization metadata as ``cost/cpu_s``, ``cost/wall_s``, ``cost/bytes_written``.
- :func:`project_month` turns recorded usage and the plant's prediction volume into a
  monthly bill at configurable unit prices (:class:`Prices`): pipeline compute, retraining
  cadence, storage growth, cloud inference vs edge inference.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl
from deltalake import DeltaTable

from mfg_assets.lake.delta import Lake
from mfg_assets.lake.names import SILVER_EDGE_PREDICTIONS, SILVER_INSPECTION_IMAGES
from mfg_assets.lake.registry import table

try:  # POSIX; elsewhere fall back to this process's CPU time only
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

CPU_S = "cost/cpu_s"
WALL_S = "cost/wall_s"
BYTES_WRITTEN = "cost/bytes_written"
HOURS_PER_MONTH = 730.0  # the cloud providers' billing month (8760 h / 12)
DAYS_PER_MONTH = 30.0


def _cpu_seconds() -> float:
    """User + system CPU of this process (all threads) and of its reaped children."""
    if resource is None:
        return time.process_time()
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@dataclass
class Usage:
    """Resources one materialization used."""

    cpu_s: float = 0.0
    wall_s: float = 0.0
    bytes_written: int = 0

    def metadata(self) -> dict[str, float | int]:
        return {CPU_S: round(self.cpu_s, 4), WALL_S: round(self.wall_s, 4),
                BYTES_WRITTEN: int(self.bytes_written)}


@contextmanager
def measure() -> Iterator[Usage]:
    """``with measure() as usage: ...`` fills ``usage.cpu_s`` and ``usage.wall_s`` on exit.

    CPU is whole-process: a Dagster step runs alone in its process (multiprocess executor),
    so the delta is the step's; under the in-process executor it includes Dagster's own
    bookkeeping threads, which is small next to real work.
    """
    usage = Usage()
    cpu0, wall0 = _cpu_seconds(), time.perf_counter()
    try:
        yield usage
    finally:
        usage.cpu_s = max(0.0, _cpu_seconds() - cpu0)
        usage.wall_s = time.perf_counter() - wall0


def delta_bytes_written(
    uri: str, version: int | None, storage_options: dict[str, str] | None = None
) -> int:
    """Bytes of the data files that commit ``version`` added to the Delta table at ``uri``."""
    if version is None:
        return 0
    return delta_bytes_added(uri, version - 1, version, storage_options)


def delta_bytes_added(
    uri: str, since: int | None, version: int | None,
    storage_options: dict[str, str] | None = None,
) -> int:
    """Bytes of the data files in snapshot ``version`` that were not in snapshot ``since``.

    The difference of the two snapshots' add actions (works on any object store; the
    commits' own log entries are not exposed by delta-rs). ``since`` None or < 0: all files.
    """
    if version is None or (since is not None and since >= version):
        return 0

    def files(v: int) -> dict[str, int]:
        actions = DeltaTable(uri, version=v, storage_options=storage_options).get_add_actions(
            flatten=True)
        frame = pl.DataFrame(actions)
        if frame.height == 0:
            return {}
        return dict(zip(frame.get_column("path").to_list(),
                        frame.get_column("size_bytes").to_list(), strict=True))

    now = files(version)
    before = files(since) if since is not None and since >= 0 else {}
    return int(sum(size for path, size in now.items() if path not in before))


def cost_metadata(
    usage: Usage, metadata: dict[str, Any] | None, lake: Lake | None
) -> dict[str, Any]:
    """``usage`` plus the bytes of the Delta commit named in ``metadata``, as metadata."""
    metadata = metadata or {}
    name = metadata.get("dagster/table_name")
    version = metadata.get("delta_version_written")
    name = getattr(name, "value", name)
    version = getattr(version, "value", version)
    if lake is not None and isinstance(name, str) and isinstance(version, int):
        usage.bytes_written = delta_bytes_written(lake.uri(table(name)), version,
                                                  lake.storage_options)
    return usage.metadata()


def shared_cost_metadata(usage: Usage, bytes_by_asset: dict[str, int]) -> dict[str, dict]:
    """``cost/*`` metadata for each asset of a multi-asset that ran as one body.

    Each asset gets its own bytes; CPU and wall time are shared in proportion to bytes
    (evenly when nothing was written), so the sums over the assets equal what was used.
    """
    total = sum(bytes_by_asset.values())
    out = {}
    for name, written in bytes_by_asset.items():
        share = written / total if total else 1 / len(bytes_by_asset)
        out[name] = Usage(usage.cpu_s * share, usage.wall_s * share, written).metadata()
    return out


# -- the monthly projection --------------------------------------------------------------


@dataclass(frozen=True)
class Prices:
    """Unit prices in USD. Defaults are public on-demand list prices (AWS us-east-1, 2024);
    every one is configurable (the ``monitoring/cost`` asset's run config)."""

    # EC2 p3.2xlarge (1x V100) on-demand: $3.06 per instance-hour, billed on wall time.
    training_instance_hour_usd: float = 3.06
    # SageMaker real-time inference, ml.m5.xlarge: $0.23 per endpoint-hour, always on.
    inference_endpoint_hour_usd: float = 0.23
    # EC2 m5.large ($0.096/h for 2 vCPU) per vCPU-hour: the batch pipeline's CPU-seconds.
    compute_vcpu_hour_usd: float = 0.048
    # S3 Standard, first 50 TB: $0.023 per GB-month.
    storage_gb_month_usd: float = 0.023
    # Data transfer out to the internet, first 10 TB/month: $0.09 per GB.
    egress_gb_usd: float = 0.09
    # Edge hardware is usually already on the line (capex): 0 by default; set an amortised
    # monthly figure per device to compare like for like.
    edge_device_month_usd: float = 0.0
    # Sizing assumptions of the cloud alternative (not prices, but configurable with them).
    endpoint_capacity_per_s: float = 20.0  # predictions one endpoint instance sustains
    response_bytes: int = 512  # a prediction sent back to the plant (egress)


@dataclass(frozen=True)
class Demand:
    """What the plant asks of inference, from ``silver.edge_predictions`` and image rates."""

    predictions_per_day: float
    edge_devices: int


@dataclass
class CostLine:
    item: str
    category: str
    quantity: float
    unit: str
    unit_price_usd: float
    monthly_usd: float
    basis: str
    extra: dict = field(default_factory=dict)


def usage_rates(usage: pl.DataFrame, min_days: float = 1.0) -> dict[str, float]:
    """Per-day rates from recorded materializations.

    ``usage``: one row per materialization with ``ts`` (datetime), ``layer``, ``cpu_s``,
    ``wall_s``, ``bytes_written``. The observed window is the span of the timestamps, at
    least ``min_days`` (a demo run of minutes counts as one day, not as a thousand).
    """
    if usage.height == 0:
        return {"days": min_days, "pipeline_cpu_s_per_day": 0.0, "bytes_per_day": 0.0,
                "model_runs_per_day": 0.0, "model_wall_s_per_run": 0.0}
    span_s = (usage.get_column("ts").max() - usage.get_column("ts").min()).total_seconds()
    days = max(min_days, span_s / 86400.0)
    models = usage.filter(pl.col("layer") == "models")
    pipeline = usage.filter(pl.col("layer") != "models")
    return {
        "days": days,
        "pipeline_cpu_s_per_day": float(pipeline.get_column("cpu_s").sum()) / days,
        "bytes_per_day": float(usage.get_column("bytes_written").sum()) / days,
        "model_runs_per_day": models.height / days,
        "model_wall_s_per_run": float(models.get_column("wall_s").mean() or 0.0),
    }


def project_month(
    rates: dict[str, float],
    demand: Demand,
    prices: Prices,
    retrain_runs_per_month: float | None = None,
) -> list[CostLine]:
    """The month's bill, line by line. ``retrain_runs_per_month`` overrides the observed
    cadence (the plan rather than what happened)."""
    p = prices
    vcpu_h = rates["pipeline_cpu_s_per_day"] * DAYS_PER_MONTH / 3600.0
    runs = (retrain_runs_per_month if retrain_runs_per_month is not None
            else rates["model_runs_per_day"] * DAYS_PER_MONTH)
    per_run = rates["model_wall_s_per_run"] / 3600.0 * p.training_instance_hour_usd
    growth_gb = rates["bytes_per_day"] * DAYS_PER_MONTH / 1e9
    per_s = demand.predictions_per_day / 86400.0
    endpoints = max(1, math.ceil(per_s / p.endpoint_capacity_per_s)) if per_s > 0 else 0
    predictions_month = demand.predictions_per_day * DAYS_PER_MONTH
    egress_gb = predictions_month * p.response_bytes / 1e9
    return [
        CostLine("pipeline_compute", "pipeline", vcpu_h, "vCPU-hour", p.compute_vcpu_hour_usd,
                 vcpu_h * p.compute_vcpu_hour_usd,
                 f"{rates['pipeline_cpu_s_per_day']:.1f} CPU-s/day x 30"),
        CostLine("retraining", "training", runs, "run", per_run, runs * per_run,
                 f"{runs:.1f} runs/month x {rates['model_wall_s_per_run']:.1f} s on a "
                 f"${p.training_instance_hour_usd}/h training instance"),
        CostLine("storage_growth", "storage", growth_gb, "GB-month", p.storage_gb_month_usd,
                 growth_gb * p.storage_gb_month_usd,
                 f"{rates['bytes_per_day']:.0f} bytes/day x 30"),
        CostLine("cloud_inference_endpoints", "cloud_inference", endpoints * HOURS_PER_MONTH,
                 "endpoint-hour", p.inference_endpoint_hour_usd,
                 endpoints * HOURS_PER_MONTH * p.inference_endpoint_hour_usd,
                 f"{demand.predictions_per_day:.0f} predictions/day -> {endpoints} endpoint(s) "
                 f"of {p.endpoint_capacity_per_s:g}/s, always on"),
        CostLine("cloud_inference_egress", "cloud_inference", egress_gb, "GB", p.egress_gb_usd,
                 egress_gb * p.egress_gb_usd,
                 f"{predictions_month:.0f} predictions x {p.response_bytes} B back to the plant"),
        CostLine("edge_inference", "edge_inference", float(demand.edge_devices), "device-month",
                 p.edge_device_month_usd, demand.edge_devices * p.edge_device_month_usd,
                 f"{demand.edge_devices} edge device(s) already on the line"),
    ]


def cost_frame(lines: list[CostLine], computed_at: datetime | None = None) -> pl.DataFrame:
    computed_at = computed_at or datetime.now(UTC)
    rows = [{k: v for k, v in asdict(line).items() if k != "extra"} for line in lines]
    return pl.DataFrame(rows).with_columns(
        pl.lit(computed_at).cast(pl.Datetime("us", "UTC")).alias("computed_at"))


def totals(lines: list[CostLine]) -> dict[str, float]:
    """Monthly USD per category, and the two ways of running inference side by side."""
    out: dict[str, float] = {}
    for line in lines:
        out[line.category] = out.get(line.category, 0.0) + line.monthly_usd
    shared = out.get("pipeline", 0.0) + out.get("training", 0.0) + out.get("storage", 0.0)
    out["total_with_cloud_inference"] = shared + out.get("cloud_inference", 0.0)
    out["total_with_edge_inference"] = shared + out.get("edge_inference", 0.0)
    return out


def cost_markdown(lines: list[CostLine]) -> str:
    rows = ["| item | quantity | unit | unit price | USD / month | basis |", "|---" * 6 + "|"]
    for line in lines:
        rows.append(f"| {line.item} | {line.quantity:,.3f} | {line.unit} | "
                    f"${line.unit_price_usd:,.4f} | ${line.monthly_usd:,.2f} | {line.basis} |")
    t = totals(lines)
    rows += ["", f"**Month with cloud inference: ${t['total_with_cloud_inference']:,.2f}**; "
             f"**with edge inference: ${t['total_with_edge_inference']:,.2f}**"]
    return "\n".join(rows)


def inference_demand(predictions: pl.DataFrame, images: pl.DataFrame) -> Demand:
    """Predictions per day the plant needs, and the edges that serve them today.

    From ``silver.edge_predictions`` (rows per data day); where edges predict nothing yet,
    the inspection image rate (``silver.inspection_images``) is what a cloud endpoint would
    have to score.
    """
    def per_day(frame: pl.DataFrame) -> float:
        if frame.height == 0:
            return 0.0
        return frame.height / max(1, frame.get_column("date").n_unique())

    edges = predictions.get_column("edge_id").n_unique() if predictions.height else 0
    rate = per_day(predictions) or per_day(images)
    return Demand(predictions_per_day=rate, edge_devices=int(edges))


def project_lake(lake: Lake, usage: pl.DataFrame, prices: Prices,
                 retrain_runs_per_month: float | None = None) -> list[CostLine]:
    """The month's projection from recorded ``usage`` and the plant's prediction volume in
    the lakehouse (edge predictions, inspection images)."""
    predictions = lake.read(table(SILVER_EDGE_PREDICTIONS)).select("date", "edge_id")
    images = lake.read(table(SILVER_INSPECTION_IMAGES)).select("date")
    return project_month(usage_rates(usage), inference_demand(predictions, images), prices,
                         retrain_runs_per_month)
