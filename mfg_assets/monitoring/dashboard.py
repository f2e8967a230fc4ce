"""The operations dashboard: one self-contained HTML page built from the lakehouse.

Everything comes from DuckDB over the Delta tables (:func:`mfg_assets.lake.catalog.connect`):
a health view per production line (freshness, contract checks, drift verdict, the bundle
each edge runs, the last rollout: what Dagster's UI, organised by asset, does not show),
contract compliance per channel and site and over event time, inspection statistics, drift,
rollouts and cost.
Charts are matplotlib PNGs inlined as base64 and the page has no JavaScript, so it renders
offline (plant networks often have no internet) and can be mailed as one file.
:func:`serve` answers with the standard library's HTTP server: only for an allowed ``Host``
(DNS-rebinding protection), and from a page cached until a table it reads gets a new Delta
version.
"""

from __future__ import annotations

import base64
import html
import io
import json
import threading
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb

from mfg_assets.lake.catalog import connect, list_tables
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.names import (
    BRONZE_QUARANTINE,
    BRONZE_VALIDATION_RESULTS,
    EDGE_BUNDLES,
    EDGE_ROLLOUTS,
    MONITORING_COST,
    MONITORING_DRIFT,
    MONITORING_INSPECTION_STATS,
    SILVER_EDGE_TELEMETRY,
    SILVER_INSPECTION_IMAGES,
    SILVER_SENSOR_READINGS,
)
from mfg_assets.lake.registry import table
from mfg_assets.settings import get_settings

BRONZE_MESSAGE_TABLES = ("sensor_readings", "process_runs", "inspection_images",
                         "edge_telemetry", "edge_predictions")
Rows = list[dict[str, Any]]


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> Rows:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _pct(part: float | None, whole: float | None) -> float | None:
    return None if not whole else 100.0 * float(part or 0) / float(whole)


# -- figures --------------------------------------------------------------------------


def compliance(con: duckdb.DuckDBPyConnection, present: set[str]) -> dict[str, Any] | None:
    """Valid share per channel (with its top errors), per site, overall, and over time."""
    if BRONZE_VALIDATION_RESULTS not in present:
        return None
    channels = _rows(con, """
        SELECT channel, sum(received) AS received, sum(valid) AS valid, sum(invalid) AS invalid
        FROM bronze.validation_results GROUP BY channel ORDER BY channel""")
    errors: dict[str, Counter] = {}
    for r in _rows(con, "SELECT channel, top_errors FROM bronze.validation_results"):
        errors.setdefault(r["channel"], Counter()).update(json.loads(r["top_errors"] or "{}"))
    for c in channels:
        c["valid_pct"] = _pct(c["valid"], c["received"])
        c["top_errors"] = errors.get(c["channel"], Counter()).most_common(3)
    total = _rows(con, "SELECT sum(received) AS received, sum(valid) AS valid "
                       "FROM bronze.validation_results")[0]
    trend, bucket, undated = event_trend(con, present)
    # Per site: landed messages carry their ISA-95 site; refused ones only their topic, whose
    # second level is the site in the UNS and the group id in Sparkplug.
    landed = [f"SELECT site, count(*) AS n FROM bronze.{t} GROUP BY site"
              for t in BRONZE_MESSAGE_TABLES if f"bronze.{t}" in present]
    sites: Rows = []
    if landed:
        refused = ("SELECT nullif(split_part(topic, '/', 2), '') AS site, count(*) AS n "
                   "FROM bronze.quarantine GROUP BY 1" if BRONZE_QUARANTINE in present
                   else "SELECT NULL::VARCHAR AS site, 0 AS n WHERE false")
        sites = _rows(con, f"""
            WITH v AS ({' UNION ALL '.join(landed)}), q AS ({refused})
            SELECT coalesce(site, 'unknown') AS site, sum(valid) AS valid,
                   sum(invalid) AS invalid
            FROM (SELECT site, n AS valid, 0 AS invalid FROM v
                  UNION ALL SELECT site, 0, n FROM q)
            GROUP BY 1 ORDER BY 1""")
        for s in sites:
            s["valid_pct"] = _pct(s["valid"], s["valid"] + s["invalid"])
    reasons = (_rows(con, "SELECT reason_code, count(*) AS n FROM bronze.quarantine "
                          "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10")
               if BRONZE_QUARANTINE in present else [])
    return {"overall_valid_pct": _pct(total["valid"], total["received"]),
            "received": int(total["received"] or 0), "channels": channels, "sites": sites,
            "trend": trend, "trend_bucket": bucket, "undated_refusals": undated,
            "quarantine_reasons": reasons}


def event_trend(con: duckdb.DuckDBPyConnection, present: set[str]) -> tuple[Rows, str, int]:
    """Landed and refused messages per hour (or day) of EVENT time, not of ingest: a replay
    of two days lands within a minute. A refused message is placed by the ``timestamp`` its
    payload carries (epoch ms, within the landed span); one without a readable timestamp
    (invalid JSON, a text timestamp) has no event time and is counted apart."""
    landed = [f"SELECT event_time AS t FROM bronze.{t}"
              for t in BRONZE_MESSAGE_TABLES if f"bronze.{t}" in present]
    if not landed:
        return [], "hour", 0
    span = _rows(con, f"SELECT min(t) AS lo, max(t) AS hi FROM ({' UNION ALL '.join(landed)})")[0]
    if span["lo"] is None:
        return [], "hour", 0
    bucket = "day" if (span["hi"] - span["lo"]).total_seconds() > 7 * 86400 else "hour"
    refused, undated = "SELECT NULL::TIMESTAMPTZ AS t WHERE false", 0
    if BRONZE_QUARANTINE in present:
        stamped = """
            SELECT CASE WHEN ms BETWEEN epoch_ms(TIMESTAMP '2000-01-01')
                                    AND epoch_ms(TIMESTAMP '2100-01-01')
                        THEN make_timestamptz(ms * 1000) END AS t
            FROM (SELECT try_cast(json_extract_string(
                      CASE WHEN json_valid(payload) THEN payload END, '$.timestamp') AS BIGINT)
                      AS ms FROM bronze.quarantine)"""
        lo, hi = span["lo"].isoformat(), span["hi"].isoformat()
        refused = (f"SELECT t FROM ({stamped}) WHERE t BETWEEN TIMESTAMPTZ '{lo}' - "
                   f"INTERVAL 1 {bucket} AND TIMESTAMPTZ '{hi}' + INTERVAL 1 {bucket}")
        undated = int(_rows(con, "SELECT count(*) AS n FROM bronze.quarantine")[0]["n"]) - int(
            _rows(con, f"SELECT count(*) AS n FROM ({refused})")[0]["n"])
    trend = _rows(con, f"""
        SELECT date_trunc('{bucket}', t) AS t, sum(valid) AS valid,
               sum(valid) + sum(invalid) AS received
        FROM (SELECT t, 1 AS valid, 0 AS invalid FROM ({' UNION ALL '.join(landed)})
              UNION ALL SELECT t, 0, 1 FROM ({refused}))
        GROUP BY 1 ORDER BY 1""")
    return trend, bucket, undated


def inspection(con: duckdb.DuckDBPyConnection, present: set[str]) -> Rows | None:
    if MONITORING_INSPECTION_STATS not in present:
        return None
    return _rows(con, """
        SELECT date, scope, line, edge_id, model, predictions, defect_rate, accuracy,
               latency_p50_ms, latency_p95_ms, latency_p99_ms, rollout_stage
        FROM monitoring.inspection_stats
        WHERE date = (SELECT max(date) FROM monitoring.inspection_stats)
        ORDER BY scope DESC, line, edge_id, model""")


def drift(con: duckdb.DuckDBPyConnection, present: set[str]) -> Rows | None:
    """The latest drift evaluation, one row per model family: verdict and what drifted."""
    if MONITORING_DRIFT not in present:
        return None
    return _rows(con, """
        WITH latest AS (
            SELECT * FROM monitoring.drift
            WHERE computed_at = (SELECT max(computed_at) FROM monitoring.drift))
        SELECT family,
               any_value(reference_source) AS reference,
               max(n_recent) AS recent_rows,
               count(*) FILTER (WHERE n_recent > 0) AS compared,
               count(*) FILTER (WHERE drifted) AS drifted,
               round(max(psi) FILTER (WHERE NOT isnan(psi)), 3) AS max_psi,
               coalesce(array_to_string(list_slice(
                   list(feature || ' (' || segment || ')' ORDER BY psi DESC)
                       FILTER (WHERE drifted), 1, 5), ', '),
                   CASE WHEN max(n_recent) = 0
                        THEN 'no data newer than the reference window' ELSE '' END)
                   AS top_drifted,
               bool_or(family_drifted) AS verdict
        FROM latest GROUP BY family ORDER BY family""")


def rollouts(con: duckdb.DuckDBPyConnection, present: set[str]) -> Rows | None:
    if EDGE_ROLLOUTS not in present:
        return None
    return _rows(con, """
        SELECT model, candidate_version, state, decision, canary_edges, reason, updated_at
        FROM edge.rollouts ORDER BY updated_at DESC LIMIT 20""")


def cost(con: duckdb.DuckDBPyConnection, present: set[str]) -> Rows | None:
    if MONITORING_COST not in present:
        return None
    return _rows(con, "SELECT item, category, quantity, unit, unit_price_usd, monthly_usd, "
                      "basis FROM monitoring.cost ORDER BY category, item")


# Where a drift segment sits: machine, camera or edge -> (area, line).
_SEGMENT_PLACES = ((SILVER_SENSOR_READINGS, "machine_id"),
                   (SILVER_INSPECTION_IMAGES, "camera_id"),
                   (SILVER_EDGE_TELEMETRY, "edge_id"))


def line_health(con: duckdb.DuckDBPyConnection, present: set[str]) -> Rows | None:
    """One row per production line: freshness (newest event, newest landing), contract
    checks (landed vs refused), the latest drift verdict of what runs there, the bundle
    each of its edges reports running, and the last rollout that touched those edges."""
    landed = [f"SELECT area, line, event_time, received_at FROM bronze.{t}"
              for t in BRONZE_MESSAGE_TABLES if f"bronze.{t}" in present]
    if not landed:
        return None
    lines = _rows(con, f"""
        SELECT area, line, count(*) AS landed, max(event_time) AS last_event,
               max(received_at) AS last_landed
        FROM ({' UNION ALL '.join(landed)}) WHERE line IS NOT NULL
        GROUP BY ALL ORDER BY ALL""")
    refused: dict[tuple, int] = {}
    if BRONZE_QUARANTINE in present:
        for r in _rows(con, "SELECT split_part(topic, '/', 3) AS area, split_part(topic, '/', "
                            "4) AS line, count(*) AS n FROM bronze.quarantine GROUP BY ALL"):
            refused[(r["area"], r["line"])] = r["n"]
    newest = max((r["last_event"] for r in lines), default=None)
    drift = _drift_by_line(con, present)
    edges = _edges_by_line(con, present)
    rollout = _rollouts_by_edge(con, present)
    for r in lines:
        place = (r["area"], r["line"])
        r["line_id"] = f"{r['area']}/{r['line']}"
        r["refused"] = refused.get(place, 0)
        r["valid_pct"] = _pct(r["landed"], r["landed"] + r["refused"])
        lag = (newest - r["last_event"]).total_seconds() / 60 if newest else 0.0
        r["freshness"] = ("current" if lag < 60 else f"{lag / 60:.1f} h behind the plant's "
                          "newest event")
        r["drift"] = drift.get(place, "not evaluated")
        on_line = edges.get(place, [])
        r["edges"] = "; ".join(f"{e}: {b}" for e, b in on_line) or "no edge reports here"
        last = [rollout[e] for e, _ in on_line if e in rollout]
        r["last_rollout"] = max(last)[1] if last else "none"
    return lines


def _drift_by_line(con: duckdb.DuckDBPyConnection, present: set[str]) -> dict[tuple, str]:
    if MONITORING_DRIFT not in present:
        return {}
    places = [f"SELECT DISTINCT {col} AS segment, area, line FROM {t}"
              for t, col in _SEGMENT_PLACES if t in present]
    if not places:
        return {}
    rows = _rows(con, f"""
        WITH latest AS (SELECT * FROM monitoring.drift WHERE computed_at = (
                 SELECT max(computed_at) FROM monitoring.drift)),
             place AS ({' UNION '.join(places)})
        SELECT p.area, p.line, d.family, sum(d.n_recent) AS recent,
               bool_or(d.family_drifted) AS declared,
               list(DISTINCT d.segment) FILTER (WHERE d.drifted) AS drifted
        FROM latest d JOIN place p ON p.segment = d.segment
        GROUP BY ALL ORDER BY ALL""")
    out: dict[tuple, list[str]] = {}
    for r in rows:
        moved = ", ".join(sorted(r["drifted"] or []))
        if not r["recent"]:
            verdict = "no newer data"
        elif r["declared"] and moved:
            verdict = f"DRIFTED ({moved})"
        elif moved:  # features moved, but the family's decision did not declare drift
            verdict = f"no drift declared (features moved on {moved})"
        else:
            verdict = "no drift"
        out.setdefault((r["area"], r["line"]), []).append(f"{r['family']}: {verdict}")
    return {k: "; ".join(v) for k, v in out.items()}


def _edges_by_line(con: duckdb.DuckDBPyConnection, present: set[str]) -> dict[tuple, list]:
    """Per line, each edge and the bundle it last reported running (model and version)."""
    if SILVER_EDGE_TELEMETRY not in present:
        return {}
    bundles = ("LEFT JOIN edge.bundles b ON b.bundle_id = t.bundle_id"
               if EDGE_BUNDLES in present else
               "LEFT JOIN (SELECT NULL AS bundle_id, NULL AS model, NULL AS model_version "
               "WHERE false) b ON b.bundle_id = t.bundle_id")
    rows = _rows(con, f"""
        WITH last AS (SELECT edge_id, area, line, arg_max(bundle_id, ts) AS bundle_id
                      FROM silver.edge_telemetry GROUP BY ALL)
        SELECT t.area, t.line, t.edge_id, t.bundle_id, b.model, b.model_version
        FROM last t {bundles} ORDER BY ALL""")
    out: dict[tuple, list] = {}
    for r in rows:
        if r["model"]:
            running = f"{r['model']} v{r['model_version']}"
        else:
            running = "no bundle" if not r["bundle_id"] else f"bundle {r['bundle_id'][:12]}"
        out.setdefault((r["area"], r["line"]), []).append((r["edge_id"], running))
    return out


def _rollouts_by_edge(con: duckdb.DuckDBPyConnection, present: set[str]) -> dict[str, tuple]:
    """Each edge's latest rollout: (updated_at, "model vN state: reason")."""
    if EDGE_ROLLOUTS not in present:
        return {}
    out: dict[str, tuple] = {}
    for r in _rows(con, "SELECT * FROM edge.rollouts ORDER BY updated_at"):
        text = f"{r['model']} v{r['candidate_version']} {r['state']}: {r['reason']}"
        for edge in [*json.loads(r["canary_edges"]), *json.loads(r["control_edges"])]:
            out[edge] = (r["updated_at"], text)
    return out


def report_path(data_dir: Path | None = None) -> Path:
    """Where the static report goes: ``<data dir>/reports/dashboard.html``."""
    root = data_dir if data_dir is not None else get_settings().data_dir
    return root / "reports" / "dashboard.html"


def collect(lake: Lake | None = None) -> dict[str, Any]:
    """Every figure of the page, as plain data (tests compare these with SQL)."""
    con = connect(lake)
    try:
        present = set(list_tables(con))
        return {"lines": line_health(con, present),
                "compliance": compliance(con, present), "inspection": inspection(con, present),
                "drift": drift(con, present), "rollouts": rollouts(con, present),
                "cost": cost(con, present)}
    finally:
        con.close()


# -- rendering --------------------------------------------------------------------------


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="chart" src="data:image/png;base64,{data}">'


def _figure(width: float = 7.0, height: float = 2.6) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def trend_chart(trend: Rows, bucket: str) -> str:
    """Valid share per hour (or day) of event time, on a date axis that spans the data."""
    if not trend:
        return ""
    import matplotlib.dates as mdates

    fig, ax = _figure()
    pct = [_pct(r["valid"], r["received"]) for r in trend]
    ax.plot([r["t"] for r in trend], pct, marker="." if len(trend) < 60 else None,
            color="#1f6f8b")
    low = min(p for p in pct if p is not None) if any(p is not None for p in pct) else 0
    bottom = max(0.0, min(low, 100.0) - 1.0)
    from matplotlib.ticker import FixedLocator, MaxNLocator

    ticks = [t for t in MaxNLocator(5).tick_values(bottom, 100.0) if bottom <= t <= 100.0]
    ax.yaxis.set_major_locator(FixedLocator(ticks))  # no tick above 100 %
    ax.set_ylim(bottom, 100.0 + 0.03 * (100.0 - bottom))
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    if len(trend) == 1:  # one bucket: an axis of that bucket, not of years
        t = trend[0]["t"]
        ax.set_xlim(t - _bucket_delta(bucket), t + _bucket_delta(bucket))
    ax.set_ylabel("valid %")
    ax.set_xlabel("event time (UTC)")
    ax.set_title(f"Contract compliance per {bucket} of event time")
    ax.grid(alpha=0.3)
    return _png(fig)


def _bucket_delta(bucket: str) -> Any:
    from datetime import timedelta

    return timedelta(days=1) if bucket == "day" else timedelta(hours=1)


def channel_chart(channels: Rows) -> str:
    if not channels:
        return ""
    fig, ax = _figure(7.0, 0.4 * len(channels) + 1)
    ax.barh([c["channel"] for c in channels], [c["valid_pct"] or 0 for c in channels],
            color="#4c956c")
    ax.set_xlim(0, 100)
    ax.set_xlabel("valid %")
    return _png(fig)


def cost_chart(lines: Rows) -> str:
    if not lines:
        return ""
    by_cat: dict[str, float] = {}
    for line in lines:
        by_cat[line["category"]] = by_cat.get(line["category"], 0.0) + line["monthly_usd"]
    shared = sum(v for k, v in by_cat.items() if k not in ("cloud_inference", "edge_inference"))
    fig, ax = _figure(5.0, 2.2)
    ax.barh(["edge inference", "cloud inference"],
            [shared + by_cat.get("edge_inference", 0), shared + by_cat.get("cloud_inference", 0)],
            color=["#4c956c", "#d1495b"])
    ax.set_xlabel("USD / month (pipeline + training + storage + inference)")
    return _png(fig)


def _fmt(value: Any, kind: str = "") -> str:
    if value is None:
        return ""
    if kind == "pct":
        return f"{value:.2f}%"
    if kind == "rate":
        return f"{100 * value:.1f}%"
    if kind == "usd":
        return f"${value:,.2f}"
    if isinstance(value, float):
        return f"{value:,.3f}"
    return str(value)


def _table(rows: Rows, columns: list[tuple[str, str, str]], row_id: str | None = None) -> str:
    """``columns``: (key, header, format kind)."""
    if not rows:
        return '<p class="empty">no rows</p>'
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in columns)
    body = []
    for r in rows:
        attr = f' data-{row_id}="{html.escape(str(r[row_id]))}"' if row_id else ""
        cells = "".join(f'<td data-col="{k}">{html.escape(_fmt(r.get(k), kind))}</td>'
                        for k, _, kind in columns)
        body.append(f"<tr{attr}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 70rem; }
h1 { margin-bottom: 0; } .sub { color: #666; margin-top: .2rem; }
section { margin: 2rem 0; } h2 { border-bottom: 2px solid #1f6f8b; padding-bottom: .2rem; }
table { border-collapse: collapse; font-size: .9rem; margin: .5rem 0; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; }
th { background: #eef3f6; } .empty { color: #888; font-style: italic; }
.kpi { font-size: 2rem; font-weight: bold; color: #1f6f8b; }
"""


def render_html(data: dict[str, Any], generated_at: datetime | None = None) -> str:
    generated_at = generated_at or datetime.now(UTC)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>mfg dashboard</title>"
             f"<style>{CSS}</style></head><body><h1>Plant data dashboard</h1>"
             f"<p class='sub'>generated {generated_at:%Y-%m-%d %H:%M:%S} UTC from the "
             "lakehouse (DuckDB over Delta)</p>"]
    parts.append("<section id='lines'><h2>Line health</h2>")
    if not data.get("lines"):
        parts.append("<p class='empty'>no line has landed messages yet</p>")
    else:
        parts.append(_table(data["lines"], [
            ("line_id", "line", ""), ("freshness", "freshness", ""),
            ("last_event", "newest event", ""), ("last_landed", "newest landing", ""),
            ("landed", "landed", ""), ("refused", "refused", ""),
            ("valid_pct", "contract valid %", "pct"), ("drift", "drift (latest)", ""),
            ("edges", "edges: running bundle", ""), ("last_rollout", "last rollout", "")],
            row_id="line_id"))
    c = data.get("compliance")
    parts.append("</section><section id='compliance'><h2>Contract compliance</h2>")
    if c is None:
        parts.append("<p class='empty'>no validation results yet</p>")
    else:
        channels = [{**ch, "top_errors": "; ".join(f"{k} ({n})" for k, n in ch["top_errors"])}
                    for ch in c["channels"]]
        parts += [
            f"<p>Valid messages overall: <span class='kpi' id='overall-valid-pct'>"
            f"{_fmt(c['overall_valid_pct'], 'pct')}</span> of "
            f"<span id='received'>{c['received']}</span> received</p>",
            "<h3>Per channel</h3>",
            _table(channels, [("channel", "channel", ""), ("received", "received", ""),
                              ("valid", "valid", ""), ("invalid", "invalid", ""),
                              ("valid_pct", "valid %", "pct"),
                              ("top_errors", "top errors", "")], row_id="channel"),
            channel_chart(c["channels"]),
            "<h3>Per site</h3>",
            _table(c["sites"], [("site", "site", ""), ("valid", "landed", ""),
                                ("invalid", "quarantined", ""),
                                ("valid_pct", "valid %", "pct")], row_id="site"),
            "<h3>Over time</h3>", trend_chart(c["trend"], c["trend_bucket"]),
            (f"<p class='sub'>{c['undated_refusals']} refused message(s) carry no readable "
             "event time (invalid JSON, a text timestamp): counted above, not on the chart"
             "</p>" if c.get("undated_refusals") else ""),
            "<h3>Quarantine reasons</h3>",
            _table(c["quarantine_reasons"], [("reason_code", "reason", ""), ("n", "count", "")]),
        ]
    parts.append("</section><section id='inspection'><h2>Inspection statistics</h2>")
    if data.get("inspection") is None:
        parts.append("<p class='empty'>no inspection statistics yet</p>")
    else:
        parts.append(_table(data["inspection"], [
            ("date", "date", ""), ("scope", "scope", ""), ("line", "line", ""),
            ("edge_id", "edge", ""), ("model", "model", ""), ("predictions", "predictions", ""),
            ("defect_rate", "defect rate", "rate"), ("accuracy", "accuracy", "rate"),
            ("latency_p50_ms", "p50 ms", ""), ("latency_p95_ms", "p95 ms", ""),
            ("latency_p99_ms", "p99 ms", ""), ("rollout_stage", "rollout", "")]))
    parts.append("</section><section id='drift'><h2>Drift</h2>")
    if data.get("drift") is None:
        parts.append("<p class='empty'>no drift report yet</p>")
    else:
        parts.append(_table(data["drift"], [
            ("family", "model family", ""), ("verdict", "drifted", ""),
            ("reference", "reference", ""), ("recent_rows", "recent rows", ""),
            ("compared", "features compared", ""), ("drifted", "features drifted", ""),
            ("max_psi", "max PSI", ""), ("top_drifted", "top drifted (segment)", "")]))
    parts.append("</section><section id='rollouts'><h2>Rollouts</h2>")
    if data.get("rollouts") is None:
        parts.append("<p class='empty'>no rollouts yet</p>")
    else:
        parts.append(_table(data["rollouts"], [
            ("model", "model", ""), ("candidate_version", "candidate", ""),
            ("state", "state", ""), ("decision", "decision", ""),
            ("canary_edges", "canary edges", ""), ("reason", "reason", ""),
            ("updated_at", "updated", "")]))
    parts.append("</section><section id='cost'><h2>Cost (projected month)</h2>")
    if data.get("cost") is None:
        parts.append("<p class='empty'>no cost projection yet (materialize monitoring/cost)</p>")
    else:
        lines = data["cost"]
        parts += [_table(lines, [
            ("item", "item", ""), ("quantity", "quantity", ""), ("unit", "unit", ""),
            ("unit_price_usd", "unit price", "usd"), ("monthly_usd", "USD / month", "usd"),
            ("basis", "basis", "")], row_id="item"), cost_chart(lines)]
    parts.append("</section></body></html>")
    return "\n".join(parts)


def build(lake: Lake | None = None) -> str:
    return render_html(collect(lake))


def write_report(path: Path, lake: Lake | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build(lake), encoding="utf-8")
    return path


# Every table collect() reads: the page changes only when one of them gets a new version.
SOURCES = (BRONZE_VALIDATION_RESULTS, BRONZE_QUARANTINE,
           *(f"bronze.{name}" for name in BRONZE_MESSAGE_TABLES),
           *(name for name, _ in _SEGMENT_PLACES), EDGE_BUNDLES,
           MONITORING_INSPECTION_STATS, MONITORING_DRIFT, EDGE_ROLLOUTS, MONITORING_COST)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def source_versions(lake: Lake) -> tuple[tuple[str, str], ...]:
    """The Delta version of every table the page reads (the cache key)."""
    versions = []
    for name in SOURCES:
        try:
            version = str(lake.version(table(name)))
        except Exception as exc:  # a broken table: key on the error, retried next request
            version = f"error:{type(exc).__name__}"
        versions.append((name, version))
    return tuple(versions)


class PageCache:
    """The rendered page, rebuilt only when a source table's Delta version changed."""

    def __init__(self, lake: Lake | None = None):
        self.lake = lake or Lake()
        self.builds = 0
        self._key: tuple[tuple[str, str], ...] | None = None
        self._page = b""
        self._lock = threading.Lock()

    def page(self) -> bytes:
        key = source_versions(self.lake)
        with self._lock:  # one build at a time; concurrent requests wait for it
            if key != self._key or any(v.startswith("error:") for _, v in key):
                self._page = build(self.lake).encode()
                self._key = key
                self.builds += 1
            return self._page


def allowed_hosts(bound: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """Host names the server answers to: loopback, the bound address, configured names."""
    names = {*LOCAL_HOSTS, *(h.strip().lower() for h in extra if h.strip())}
    if bound not in ("0.0.0.0", "::", ""):  # a wildcard bind is no name anybody uses
        names.add(bound.lower())
    return frozenset(names)


def host_name(header: str | None) -> str | None:
    """The name in a ``Host`` header without its port (``[::1]:8050`` -> ``::1``)."""
    if not header or any(c.isspace() for c in header.strip()):
        return None
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else None
    name, _, port = value.partition(":")
    if port and not port.isdigit():
        return None
    return name or None


def make_server(
    lake: Lake | None = None,
    host: str = "127.0.0.1",
    port: int = 8050,
    extra_hosts: Iterable[str] = (),
) -> ThreadingHTTPServer:
    """The dashboard's HTTP server, bound but not yet serving (``port=0``: a free port)."""
    cache = PageCache(lake)
    allowed = allowed_hosts(host, extra_hosts)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            # DNS rebinding: a page on evil.example that resolves to 127.0.0.1 sends
            # "Host: evil.example"; answer only to names this server is known by.
            name = host_name(self.headers.get("Host"))
            if name is None:
                self._send(400, b"missing or malformed Host header\n", "text/plain")
                return
            if name not in allowed:
                self._send(421, b"this server does not answer to that Host\n", "text/plain")
                return
            if self.path not in ("/", "/index.html"):
                self.send_error(404)
                return
            try:
                body, status = cache.page(), 200
            except Exception as exc:  # show the failure on the page, keep serving
                body, status = f"<pre>{html.escape(repr(exc))}</pre>".encode(), 500
            self._send(status, body, "text/html; charset=utf-8")

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: one line per request is noise on a plant PC

    server = ThreadingHTTPServer((host, port), Handler)
    server.page_cache = cache  # type: ignore[attr-defined]
    server.allowed_hosts = allowed  # type: ignore[attr-defined]
    return server


def serve(
    lake: Lake | None = None,
    host: str = "127.0.0.1",
    port: int = 8050,
    extra_hosts: Iterable[str] = (),
) -> None:
    """Serve the page until interrupted (see :func:`make_server`)."""
    server = make_server(lake, host, port, extra_hosts)
    print(f"dashboard on http://{host}:{server.server_address[1]}/ "
          f"(answers to Host: {', '.join(sorted(server.allowed_hosts))})",  # type: ignore[attr-defined]
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
