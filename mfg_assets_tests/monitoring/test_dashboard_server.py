"""`mfg dashboard`'s HTTP server, for real on a free port: it answers only to Host names it
knows (DNS rebinding), and rebuilds the page only when a table it reads changes."""

from __future__ import annotations

import http.client
import threading
from datetime import UTC, datetime

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mfg_assets.cli import main
from mfg_assets.lake.registry import table
from mfg_assets.monitoring.dashboard import host_name, make_server


@pytest.fixture
def server(lake):
    httpd = make_server(lake, "127.0.0.1", 0, extra_hosts=["dash.plant.example"])
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def get(server, host: str | None, path: str = "/") -> tuple[int, bytes]:
    port = server.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_host=True)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_known_hosts_get_the_page(server):
    port = server.server_address[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", "[::1]:80",
                 "dash.plant.example", f"dash.plant.example:{port}"):
        status, body = get(server, host)
        assert status == 200, host
        assert b"Plant data dashboard" in body


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.from_regex(r"[a-z0-9][a-z0-9.-]{0,30}\.(com|net|example|io)", fullmatch=True),
       st.integers(1, 65535))
def test_a_rebinding_host_is_refused(server, name, port):
    status, body = get(server, f"{name}:{port}")
    assert status == 421
    assert b"dashboard" not in body


@pytest.mark.parametrize("host", [None, "", "evil.example.com", "127.0.0.1.evil.example",
                                  "localhost:abc", "localhost evil"])
def test_missing_or_foreign_hosts_are_refused(server, host):
    status, body = get(server, host)
    assert status in (400, 421)
    assert b"Plant data dashboard" not in body


def cost_row(item: str, usd: float) -> pl.DataFrame:
    spec = table("monitoring.cost")
    return pl.DataFrame({
        "item": [item], "category": ["compute"], "quantity": [1.0], "unit": ["vCPU-h"],
        "unit_price_usd": [usd], "monthly_usd": [usd], "basis": ["test"],
        "computed_at": [datetime(2026, 11, 1, tzinfo=UTC)],
    }).select(list(spec.polars_schema))


def test_the_page_is_cached_until_a_source_table_changes(server, lake):
    cache = server.page_cache
    first = get(server, "localhost")[1]
    assert get(server, "localhost")[1] == first and cache.builds == 1
    lake.append(table("monitoring.cost"), cost_row("pipeline_compute", 12.5))
    status, second = get(server, "localhost")
    assert status == 200 and cache.builds == 2
    assert b"pipeline_compute" in second and b"pipeline_compute" not in first
    get(server, "127.0.0.1")
    assert cache.builds == 2
    lake.append(table("monitoring.cost"), cost_row("storage_growth", 1.0))
    assert b"storage_growth" in get(server, "localhost")[1] and cache.builds == 3


def test_host_name_parsing():
    assert host_name("LocalHost:8050") == "localhost"
    assert host_name("[::1]:8050") == "::1"
    assert host_name("a b") is None and host_name(None) is None and host_name("x:y") is None


def test_help_says_why_a_public_bind_needs_an_authenticating_proxy(capsys):
    with pytest.raises(SystemExit):
        main(["dashboard", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "reverse proxy that authenticates users" in text and "--allow-host" in text
