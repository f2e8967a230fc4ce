"""Supervision of the stack's processes: reap, restart with backoff, alert.

Every service the launcher started is polled (``Popen.poll`` reaps it, so nothing stays
``<defunct>``). A service that exits without being asked to is restarted with the same
command line and environment, so a gateway comes back under the same MQTT client id and
resumes its persistent session: what the broker queued for it while it was down (its share
of the shared subscription) is delivered then, not after the session expiry. Restarts back
off (1, 2, 4 ... up to 30 s) and are bounded (5 within 10 min, then it is left down); each
exit, restart and give-up is logged at ERROR and raised as an alert.

Deliberately independent of ``mfg_assets.defs`` (the stack never imports Dagster): an alert is
a log line, a line on the launcher's stdout and, when ``MFG_ALERT_WEBHOOK_URL`` is set, a JSON
POST to that webhook (the same variable and message shape as the platform's alerts).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mfg_assets.monitoring.alerts import post_alert
from mfg_assets.stack.processes import Service, stop_group

log = logging.getLogger("mfg.stack.supervise")


def alert(message: str, **details: object) -> dict[str, object]:
    """Log at ERROR, print one ``ALERT`` line, POST to the webhook if one is configured."""
    doc = {"source": "mfg-stack", "at": datetime.now(UTC).isoformat(timespec="seconds"),
           "message": message, **details}
    print(f"ALERT {doc['at']} {message}", file=sys.stdout, flush=True)
    post_alert(doc, level=logging.ERROR)  # a dead webhook does not stop the supervisor
    return doc


@dataclass(frozen=True)
class RestartPolicy:
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    max_restarts: int = 5  # within window_s; one more exit and the service is left down
    window_s: float = 600.0

    def delay(self, recent_restarts: int) -> float:
        return min(self.max_delay_s, self.first_delay_s * 2**recent_restarts)


@dataclass
class _Watch:
    restarts: list[float] = field(default_factory=list)  # monotonic times of restarts
    due: float | None = None  # when the pending restart runs
    gave_up: bool = False


class Supervisor:
    """Watch ``services`` in a background thread until :meth:`stop`.

    ``services`` is read on every pass (the launcher appends to its list as it starts
    tiers). ``on_restart`` runs after each restart (the launcher rewrites stack.json).
    """

    def __init__(
        self,
        services: Sequence[Service],
        policy: RestartPolicy | None = None,
        on_restart: Callable[[Service], None] | None = None,
        alert: Callable[..., object] = alert,
        interval_s: float = 0.2,
        stop_requested: Callable[[], bool] = lambda: False,
    ) -> None:
        self.services = services
        # `stack down` from another shell stops the services itself: their exits are then
        # asked for, and a restart would bring them back behind its back
        self.stop_requested = stop_requested
        self.policy = policy or RestartPolicy()
        self.on_restart = on_restart
        self.alert = alert
        self.interval_s = interval_s
        self.watches: dict[str, _Watch] = {}
        self.events: list[tuple[float, str, str]] = []  # (monotonic, service, what)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stack-supervisor", daemon=True)

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (before the launcher stops the services on purpose)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            for service in list(self.services):
                try:
                    self.check(service)
                except Exception:  # one bad restart must not end the supervision of others
                    log.exception("supervising %s failed", service.name)

    def check(self, service: Service, now: float | None = None) -> None:
        """One pass over one service: notice an exit, schedule or run its restart."""
        now = time.monotonic() if now is None else now
        watch = self.watches.setdefault(service.name, _Watch())
        if watch.gave_up:
            return
        if watch.due is not None:
            if now >= watch.due:
                watch.due = None
                watch.restarts.append(now)
                service.start()
                self._event(service, f"restarted (pid {service.pid})", logging.WARNING)
                if self.on_restart is not None:
                    self.on_restart(service)
            return
        proc = service.proc
        if proc is None or proc.poll() is None:  # poll() reaps an exited child
            return
        if self.stop_requested():
            self._event(service, "stopped on request", logging.INFO)
            self._stop.set()
            return
        code = proc.returncode
        # what it forked may outlive it (workers holding its port): clear its process group
        stop_group(proc.pid, timeout_s=5.0)
        recent = [t for t in watch.restarts if now - t < self.policy.window_s]
        watch.restarts = recent
        if len(recent) >= self.policy.max_restarts:
            watch.gave_up = True
            self._event(service, "gave up")
            self.alert(
                f"{service.name} exited with {code}; {len(recent)} restarts in "
                f"{self.policy.window_s:.0f}s: left down (see {service.log})",
                service=service.name, exit_code=code,
            )
            return
        delay = self.policy.delay(len(recent))
        watch.due = now + delay
        self._event(service, f"exited {code}")
        self.alert(
            f"{service.name} (pid {proc.pid}) exited with {code}; restart "
            f"{len(recent) + 1}/{self.policy.max_restarts} in {delay:.0f}s (log {service.log})",
            service=service.name, exit_code=code,
        )

    def _event(self, service: Service, what: str, level: int = logging.ERROR) -> None:
        self.events.append((time.monotonic(), service.name, what))
        log.log(level, "%s %s", service.name, what)
