"""post_alert: one JSON message reaches a real local webhook; a dead or missing one is no error."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from mfg_assets.monitoring.alerts import WEBHOOK_ENV, post_alert


class _Inbox(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):  # keep pytest output clean
        pass


def test_the_message_is_posted_as_json_to_the_configured_webhook(monkeypatch):
    _Inbox.received = []
    server = HTTPServer(("127.0.0.1", 0), _Inbox)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv(WEBHOOK_ENV, f"http://127.0.0.1:{server.server_address[1]}/hook")
        assert post_alert({"kind": "test", "n": 3}) is True
    finally:
        server.shutdown()
        server.server_close()
    assert _Inbox.received == [("application/json", {"kind": "test", "n": 3})]


def test_a_dead_webhook_does_not_fail_the_caller():
    server = HTTPServer(("127.0.0.1", 0), _Inbox)
    port = server.server_address[1]
    server.server_close()  # nothing listens there any more
    assert post_alert({"kind": "test"}, url=f"http://127.0.0.1:{port}/hook") is False


def test_without_webhook_alerts_are_only_logged(monkeypatch, caplog):
    monkeypatch.delenv(WEBHOOK_ENV, raising=False)
    assert post_alert({"kind": "test"}) is False
    assert any('"kind": "test"' in r.getMessage() for r in caplog.records)


def test_freshness_alerts_on_turning_bad_and_on_recovery_only():
    from mfg_assets.monitoring.alerts import freshness_changed

    warn = freshness_changed("silver/labels", "WARN", "PASS", 1.0)
    assert (warn["kind"], warn["text"]) == (
        "freshness_warning", "silver/labels freshness PASS -> WARN")
    assert freshness_changed("a", "FAIL", "WARN", None)["kind"] == "freshness_failed"
    assert freshness_changed("a", "PASS", "FAIL", None)["kind"] == "freshness_recovered"
    assert freshness_changed("a", "PASS", "UNKNOWN", None) is None  # nothing to tell anyone
    assert freshness_changed("a", "UNKNOWN", "PASS", None) is None


def test_check_message_and_first_line_of_an_error():
    from mfg_assets.monitoring.alerts import check_failed, first_line

    message = check_failed("silver/x", "schema", "ERROR", None, "2026-11-01", {"bad_rows": 3})
    assert message["text"] == "check schema failed on silver/x"
    assert (message["kind"], message["run_id"], message["metadata"]) == (
        "asset_check_failed", None, {"bad_rows": 3})
    assert first_line("\n  boom: truncated\nTraceback ...") == "boom: truncated"
    assert first_line("x" * 600) == "x" * 500
    assert first_line(None) == first_line("  \n") == ""
