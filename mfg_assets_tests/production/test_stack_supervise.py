"""The stack's supervisor on real child processes: reaped, restarted with backoff, bounded."""

from __future__ import annotations

import http.server
import json
import os
import sys
import threading
from pathlib import Path

import psutil
import pytest

from mfg_assets.monitoring.alerts import WEBHOOK_ENV
from mfg_assets.stack import supervise
from mfg_assets.stack.processes import Service
from mfg_assets.stack.supervise import RestartPolicy, Supervisor


def _crasher(tmp_path: Path) -> Service:
    """Counts its starts in a file, then exits 3 at once."""
    count = tmp_path / "starts"
    code = (f"import pathlib; p = pathlib.Path({str(count)!r}); "
            "p.write_text(str(int(p.read_text() or 0) + 1) if p.exists() else '1'); exit(3)")
    return Service("crasher", [sys.executable, "-c", code], {}, tmp_path / "crasher.log")


def _exited(service: Service) -> None:
    """Wait for the child to exit WITHOUT reaping it (it stays a zombie until polled)."""
    assert service.pid is not None
    os.waitid(os.P_PID, service.pid, os.WEXITED | os.WNOWAIT)
    assert psutil.Process(service.pid).status() == psutil.STATUS_ZOMBIE


def test_policy_backs_off_exponentially_and_is_capped():
    policy = RestartPolicy(first_delay_s=1, max_delay_s=30)
    assert [policy.delay(k) for k in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_exits_are_reaped_alerted_restarted_with_backoff_then_left_down(tmp_path: Path):
    alerts: list[str] = []
    service = _crasher(tmp_path).start()
    policy = RestartPolicy(first_delay_s=1, max_delay_s=4, max_restarts=3, window_s=100)
    supervisor = Supervisor([service], policy, alert=lambda m, **_: alerts.append(m))
    now, pids = 0.0, []
    for _ in range(3):  # exit -> scheduled (backoff) -> restarted, three times
        pid = service.pid
        _exited(service)
        supervisor.check(service, now)
        assert psutil.pid_exists(pid) is False  # reaped, not <defunct>
        due = supervisor.watches["crasher"].due
        supervisor.check(service, due - 0.01)
        assert service.pid == pid  # not before its backoff
        supervisor.check(service, due)
        assert service.pid != pid
        pids.append(due - now)
        now = due
    assert pids == [1, 2, 4]
    _exited(service)
    supervisor.check(service, now)  # a fourth exit within the window: left down
    assert supervisor.watches["crasher"].gave_up
    assert (tmp_path / "starts").read_text() == "4"
    assert len(alerts) == 4 and "left down" in alerts[-1] and "exited with 3" in alerts[0]


def test_restarts_outside_the_window_do_not_count(tmp_path: Path):
    service = _crasher(tmp_path).start()
    policy = RestartPolicy(first_delay_s=1, max_restarts=1, window_s=10)
    supervisor = Supervisor([service], policy, alert=lambda m, **_: None)
    _exited(service)
    supervisor.check(service, 0.0)
    supervisor.check(service, 1.0)  # restart 1
    _exited(service)
    supervisor.check(service, 20.0)  # its restart is older than the window: another one
    assert not supervisor.watches["crasher"].gave_up
    assert supervisor.watches["crasher"].due == 21.0


def test_a_running_service_is_left_alone_and_stop_ends_watching(tmp_path: Path):
    service = Service("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], {},
                      tmp_path / "sleeper.log").start()
    supervisor = Supervisor([service], interval_s=0.05, alert=lambda m, **_: None).start()
    try:
        pid = service.pid
        supervisor.stop()
        service.stop(5)  # stopped on purpose after the supervisor: not restarted
        assert service.proc is None and not psutil.pid_exists(pid)
        assert supervisor.events == []
    finally:
        supervisor.stop()
        service.stop(5)


def test_alert_logs_prints_and_posts_to_the_webhook(monkeypatch, capsys,
                                                    caplog: pytest.LogCaptureFixture):
    posted: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posted.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.delenv(WEBHOOK_ENV, raising=False)
        supervise.alert("gateway-2 exited with -9", service="gateway-2")
        assert posted == [] and "ALERT" in capsys.readouterr().out
        assert any(r.levelname == "ERROR" for r in caplog.records)
        monkeypatch.setenv(WEBHOOK_ENV, f"http://127.0.0.1:{server.server_port}/a")
        supervise.alert("gateway-2 exited with -9", service="gateway-2")
        assert posted and posted[0]["service"] == "gateway-2"
        assert posted[0]["message"] == "gateway-2 exited with -9"
        # a dead webhook is logged, never raised
        monkeypatch.setenv(WEBHOOK_ENV, "http://127.0.0.1:9/unreachable")
        supervise.alert("still alerting")
    finally:
        server.shutdown()


def test_stack_down_from_another_shell_is_not_undone_by_a_restart(tmp_path: Path):
    """`stack down` stops the services itself: the supervisor sees asked-for exits (the
    stack test found ports reopened by restarts after `down`)."""
    from mfg_assets.stack.launch import stop_request

    service = _crasher(tmp_path).start()
    alerts: list[str] = []
    supervisor = Supervisor([service], alert=lambda m, **_: alerts.append(m),
                            stop_requested=lambda: stop_request(tmp_path).exists())
    stop_request(tmp_path).touch()
    _exited(service)
    supervisor.check(service, 0.0)
    supervisor.check(service, 100.0)
    assert supervisor.watches["crasher"].due is None and not alerts
    assert (tmp_path / "starts").read_text() == "1"
