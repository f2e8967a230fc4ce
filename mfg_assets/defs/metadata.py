"""Materialization metadata people want to see for a Delta table write."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import dagster as dg

from mfg_assets.lake.delta import Lake, WriteResult
from mfg_assets.lake.registry import TableSpec
from mfg_assets.ml.registry import mlflow_ui_url


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


def as_metadata(facts: dict[str, Any], *, md: tuple[str, ...] = (),
                paths: tuple[str, ...] = ()) -> dict[str, Any]:
    """A room's summary (plain data: a bundle, a rollout, a gate verdict) as Dagster
    metadata: dicts and lists as JSON, named keys as markdown or paths, the rest as is."""
    def value(key: str, v: Any) -> Any:
        if key in md:
            return dg.MetadataValue.md(v)
        if key in paths:
            return dg.MetadataValue.path(v)
        return dg.MetadataValue.json(v) if isinstance(v, dict | list) else v

    return {k: value(k, v) for k, v in facts.items()}


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
