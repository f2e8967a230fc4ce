"""Materialization metadata people want to see for a Delta table write."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import dagster as dg

from mfg_assets.lake.delta import Lake, WriteResult
from mfg_assets.lake.registry import TableSpec


def table_schema(spec: TableSpec) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in spec.polars_schema.items()]
    )


def table_metadata(lake: Lake, spec: TableSpec, write: WriteResult | None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "dagster/uri": lake.uri(spec),
        "dagster/column_schema": table_schema(spec),
        "dagster/table_name": spec.qualified_name,
        "delta_version": lake.version(spec),
    }
    if lake.exists(spec):
        meta["table_rows"] = lake.row_count(spec)
    if write is not None:
        meta["dagster/row_count"] = write.rows
        meta["delta_version_written"] = write.version
    return meta


# -- numbers and links a person reads in the asset catalog -------------------------------

MLFLOW_UI = "http://127.0.0.1:5000"  # `make mlflow`: the MLflow UI on the embedded store


def rounded(value: Any, digits: int = 4) -> Any:
    """A float to ``digits`` significant digits (0.8506189 -> 0.8506); anything else as is.

    Metric values in the UI are read, not computed with; the MLflow run keeps full precision.
    """
    if isinstance(value, float) and value == value and value not in (float("inf"), float("-inf")):
        return float(f"{value:.{digits}g}")
    return value


def rounded_all(values: dict[str, Any], digits: int = 4) -> dict[str, Any]:
    return {key: rounded(value, digits) for key, value in values.items()}


def mlflow_ui_url() -> str:
    """Where a person opens MLflow: the tracking server itself when there is one, else the
    `make mlflow` UI over the embedded sqlite store."""
    from mfg_assets.settings import get_settings

    uri = get_settings().mlflow_tracking_uri
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else MLFLOW_UI


def mlflow_run_link(run_id: str) -> dg.MetadataValue:
    return dg.MetadataValue.url(f"{mlflow_ui_url()}/#/runs/{run_id}")


def mlflow_model_link(name: str, version: str | int) -> dg.MetadataValue:
    return dg.MetadataValue.url(f"{mlflow_ui_url()}/#/models/{name}/versions/{version}")


def mlflow_figure(run_id: str, artifact_path: str, title: str) -> dg.MetadataValue:
    """A run's PNG artifact shown inline on the asset page.

    The Dagster UI renders markdown inline only under 1,000 characters (longer, e.g. a
    base64 data: image, hides behind "[Show Markdown]"), so the image is a link to the
    MLflow UI's artifact endpoint: inline while `make mlflow` (or the server) runs.
    """
    src = f"{mlflow_ui_url()}/get-artifact?path={quote(artifact_path)}&run_uuid={run_id}"
    return dg.MetadataValue.md(f"![{title}]({src})")
