"""The local labeling page: the review queue, each item's image or sensor window, a verdict form.

Served by the standard library on 127.0.0.1 by default. Like the dashboard it answers only to
Host names it knows (DNS rebinding), and a verdict is a form POST that must come from this
page: same origin (``Origin``, else ``Referer``) and a token issued with the page. The token
also names what the page showed, so a POST can judge only a prediction the server listed;
place, edge, model and bundle come from the server's copy, never from the form.
"""

from __future__ import annotations

import base64
import html
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import polars as pl

from mfg_assets.labeling.queue import review_queue, window_of
from mfg_assets.labeling.store import (
    CONFIRM,
    REJECT,
    Verdict,
    VerdictRefused,
    read_labels,
    verdict_for,
)
from mfg_assets.lake.delta import Lake
from mfg_assets.lake.names import (
    SILVER_EDGE_PREDICTIONS,
    SILVER_INSPECTION_IMAGES,
    SILVER_SENSOR_READINGS,
)
from mfg_assets.lake.registry import table
from mfg_assets.monitoring.dashboard import allowed_hosts, host_name

MAX_FORM_BYTES = 16 * 1024
PAGES_KEPT = 64  # issued page tokens remembered (older pages must be reloaded)
DEFAULT_WINDOW_S = 600.0  # the sensor family's window (features.sensor_windows "10m")


# -- data ------------------------------------------------------------------------------------


def _read(lake: Lake, name: str) -> pl.LazyFrame | None:
    spec = table(name)
    return lake.scan(spec) if lake.exists(spec) else None


def collect(lake: Lake, limit: int = 30, window_s: float = DEFAULT_WINDOW_S
            ) -> list[dict[str, Any]]:
    """The review queue as dicts, each with ``visual``: an ``<img>`` or an inline SVG."""
    predictions = _read(lake, SILVER_EDGE_PREDICTIONS)
    if predictions is None:
        return []
    queue = review_queue(predictions.collect(), read_labels(lake), limit)
    items = queue.to_dicts()
    images = _read(lake, SILVER_INSPECTION_IMAGES)
    ids = [i["source_id"] for i in items if window_of(i["source_id"]) is None]
    pngs: dict[str, bytes] = {}
    if images is not None and ids:
        found = images.filter(pl.col("image_id").is_in(ids)).select("image_id", "png").collect()
        pngs = dict(zip(found["image_id"], found["png"], strict=True))
    readings = _read(lake, SILVER_SENSOR_READINGS)
    for item in items:
        window = window_of(item["source_id"])
        if item["source_id"] in pngs:
            item["visual"] = image_tag(pngs[item["source_id"]], item["source_id"])
        elif window is not None and readings is not None:
            machine, start_ms = window
            start = datetime.fromtimestamp(start_ms / 1000, UTC)
            rows = readings.filter(
                (pl.col("machine_id") == machine) & (pl.col("ts") >= start)
                & (pl.col("ts") < start + timedelta(seconds=window_s))
            ).select("sensor", "ts", "value").collect()
            item["visual"] = window_svg(rows, f"{machine} from {start:%Y-%m-%d %H:%M} UTC")
        else:
            item["visual"] = "<p class=none>input not found in silver</p>"
    return items


# -- rendering -------------------------------------------------------------------------------


def image_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<img class=shot alt="{html.escape(alt)}" '
            f'src="data:image/png;base64,{data}" width=192>')


def window_svg(readings: pl.DataFrame, title: str, width: int = 420, row_h: int = 44) -> str:
    """Small multiples: one line per sensor over the window, each scaled to its own range."""
    if readings.height == 0:
        return "<p class=none>no readings in this window</p>"
    sensors = sorted(readings.get_column("sensor").unique().to_list())
    t0 = readings.get_column("ts").min()
    span = max((readings.get_column("ts").max() - t0).total_seconds(), 1e-9)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
             f'height="{row_h * len(sensors) + 16}"><title>{html.escape(title)}</title>']
    for row, sensor in enumerate(sensors):
        series = readings.filter(pl.col("sensor") == sensor).sort("ts")
        values = series.get_column("value").to_list()
        low, high = min(values), max(values)
        scale = (high - low) or 1.0
        top = 14 + row * row_h
        points = " ".join(
            f"{110 + (ts - t0).total_seconds() / span * (width - 120):.1f},"
            f"{top + (row_h - 10) * (1 - (v - low) / scale):.1f}"
            for ts, v in zip(series.get_column("ts"), values, strict=True))
        parts.append(f'<text x="0" y="{top + row_h / 2:.0f}" font-size="11">'
                     f'{html.escape(sensor[:16])}</text>'
                     f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.2" '
                     f'points="{points}"/>')
    parts.append("</svg>")
    return "".join(parts)


_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
.item{border:1px solid #ccc;border-radius:6px;padding:.8rem;margin:.8rem 0;display:flex;gap:1rem}
.flag{border-color:#d62728}.meta{font-size:.9rem}.meta b{font-family:monospace}
.none{color:#888}.saved{background:#e7f5e7;padding:.5rem}.error{background:#fde;padding:.5rem}
form{margin-top:.5rem}input[type=text]{width:10rem}"""


def render_page(items: list[dict[str, Any]], token: str, operator: str = "",
                notice: str = "", error: str = "") -> str:
    rows = []
    for index, item in enumerate(items):
        threshold = item.get("threshold")
        margin = item.get("margin")
        text = (f"edge <b>{html.escape(item['edge_id'])}</b> · model "
                f"<b>{html.escape(item['model'])}</b> · bundle "
                f"<b>{html.escape(item['bundle_id'])}</b><br>input "
                f"<b>{html.escape(item['source_id'])}</b> · score {item['score']:.4g}"
                + (f" · threshold {threshold:.4g}" if threshold is not None else "")
                + (f" · margin {margin:.3g}" if margin is not None else "")
                + f"<br>predicted {html.escape(str(item.get('value')))}"
                + (" · <strong>FLAGGED</strong>" if item["flagged"] else ""))
        rows.append(
            f'<div class="item{" flag" if item["flagged"] else ""}" id="item-{index}">'
            f'<div>{item["visual"]}</div><div class=meta>{text}'
            f'<form method=post action="/verdict">'
            f'<input type=hidden name=token value="{token}">'
            f'<input type=hidden name=item value="{index}">'
            f'<label>operator <input type=text name=operator required maxlength=128 '
            f'value="{html.escape(operator)}"></label> '
            f'<label>comment <input type=text name=comment maxlength=2000></label><br>'
            f'<button name=verdict value="{CONFIRM}">confirm</button> '
            f'<button name=verdict value="{REJECT}">reject</button> '
            f'<label>or class <input type=text name=label maxlength=64></label> '
            f'<button name=verdict value="label">set class</button>'
            f"</form></div></div>")
    body = "".join(rows) or "<p class=none>nothing to review</p>"
    banner = (f"<p class=saved>{html.escape(notice)}</p>" if notice else "") + (
        f"<p class=error>{html.escape(error)}</p>" if error else "")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>mfg labeling</title>"
            f"<style>{_STYLE}</style></head><body><h1>Review queue</h1>"
            f"<p>Flagged predictions first, then the least certain (score nearest the "
            f"threshold).</p>{banner}{body}</body></html>")


# -- server ----------------------------------------------------------------------------------


class PageTokens:
    """Tokens issued with each page, mapped to the predictions that page listed."""

    def __init__(self, kept: int = PAGES_KEPT) -> None:
        self.kept = kept
        self._pages: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def issue(self, items: list[dict[str, Any]]) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._pages[token] = items
            while len(self._pages) > self.kept:
                self._pages.popitem(last=False)
        return token

    def item(self, token: str, index: str) -> dict[str, Any] | None:
        with self._lock:
            # compare in constant time: the token is the page's secret
            match = next((t for t in self._pages if secrets.compare_digest(t, token)), None)
            items = self._pages.get(match) if match else None
        if items is None or not index.isdigit() or int(index) >= len(items):
            return None
        return items[int(index)]


def same_origin(headers: Any, host_header: str) -> bool:
    """The POST comes from a page of this server (Origin, else Referer; neither: refused)."""
    own = f"http://{host_header.strip().lower()}"
    origin = headers.get("Origin")
    if origin is not None:
        return origin.strip().lower() == own
    referer = headers.get("Referer")
    if referer:
        parts = urlsplit(referer.strip())
        return f"{parts.scheme}://{parts.netloc}".lower() == own
    return False


Recorder = Callable[[Verdict], None]


def make_server(lake: Lake, record: Recorder, host: str = "127.0.0.1", port: int = 8060,
                operator: str = "", extra_hosts: Iterable[str] = (), limit: int = 30,
                window_s: float = DEFAULT_WINDOW_S) -> ThreadingHTTPServer:
    """The labeling server, bound but not serving (``port=0``: a free port). ``record`` takes
    a checked verdict (append to bronze, or publish to the broker)."""
    allowed = allowed_hosts(host, extra_hosts)
    tokens = PageTokens()

    class Handler(BaseHTTPRequestHandler):
        def _host_ok(self) -> bool:
            name = host_name(self.headers.get("Host"))
            if name is None:
                self._send(400, b"missing or malformed Host header\n", "text/plain")
                return False
            if name not in allowed:
                self._send(421, b"this server does not answer to that Host\n", "text/plain")
                return False
            return True

        def do_GET(self) -> None:
            if not self._host_ok():
                return
            path, _, query = self.path.partition("?")
            if path not in ("/", "/index.html"):
                self.send_error(404)
                return
            notice = "verdict recorded" if "saved=1" in query.split("&") else ""
            self._page(notice=notice)

        def _page(self, notice: str = "", error: str = "", status: int = 200) -> None:
            try:
                items = collect(lake, limit, window_s)
                page = render_page(items, tokens.issue(items), operator, notice, error)
            except Exception as exc:  # show the failure, keep serving
                page, status = f"<pre>{html.escape(repr(exc))}</pre>", 500
            self._send(status, page.encode(), "text/html; charset=utf-8")

        def do_POST(self) -> None:
            if not self._host_ok():
                return
            if self.path != "/verdict":
                self.send_error(404)
                return
            if not same_origin(self.headers, self.headers.get("Host", "")):
                self._send(403, b"cross-origin form refused\n", "text/plain")
                return
            length = self.headers.get("Content-Length", "")
            if not length.isdigit() or int(length) > MAX_FORM_BYTES:
                self._send(413, b"form missing or too large\n", "text/plain")
                return
            form = {k: v[0] for k, v in parse_qs(
                self.rfile.read(int(length)).decode("utf-8", "replace")).items()}
            item = tokens.item(form.get("token", ""), form.get("item", ""))
            if item is None:
                self._send(403, b"unknown or expired page token: reload the page\n",
                           "text/plain")
                return
            verdict = form.get("verdict", "")
            if verdict == "label":
                verdict = form.get("label", "")
            try:
                record(verdict_for(item, verdict, form.get("operator", ""),
                                   form.get("comment")))
            except VerdictRefused as exc:
                self._page(error=f"verdict refused: {exc}", status=400)
                return
            self.send_response(303)
            self.send_header("Location", "/?saved=1")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Frame-Options", "DENY")
            self.send_header("Content-Security-Policy",
                             "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
                             "form-action 'self'; frame-ancestors 'none'")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.allowed_hosts = allowed  # type: ignore[attr-defined]
    return server


def serve(server: ThreadingHTTPServer) -> None:
    host, port = server.server_address[:2]
    names = ", ".join(sorted(server.allowed_hosts))  # type: ignore[attr-defined]
    print(f"labeling page on http://{host}:{port}/ (answers to Host: {names})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
