"""Alert delivery: one JSON message, logged and POSTed to the webhook.

``MFG_ALERT_WEBHOOK_URL`` (Slack/Teams/any JSON endpoint, read through ``settings.py``)
receives each message; without it, alerts are only logged. The Dagster sensors that find the
failures live in ``defs/alerts.py``; this module says which changes are worth a message, what
the message holds, and sends it.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

from mfg_assets.settings import get_settings

WEBHOOK_ENV = "MFG_ALERT_WEBHOOK_URL"
log = logging.getLogger(__name__)


def post_alert(message: dict[str, Any], url: str | None = None, timeout_s: float = 5.0,
               level: int = logging.WARNING) -> bool:
    """Log the alert (at ``level``) and POST it as JSON to the webhook; False when not sent.

    A dead webhook must not fail the caller (the alert is in the log either way).
    """
    url = url if url is not None else get_settings().alerts.webhook_url
    log.log(level, "ALERT %s", json.dumps(message, sort_keys=True, default=str))
    if not url:
        return False
    request = urllib.request.Request(
        url, data=json.dumps(message, default=str).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return 200 <= response.status < 300
    except OSError as exc:
        log.error("alert webhook %s failed: %s", url, exc)
        return False


# -- the messages ------------------------------------------------------------------------

BAD_FRESHNESS = ("WARN", "FAIL")


def check_failed(asset: str, check: str, severity: str, run_id: str | None,
                 partition: str | None, metadata: dict[str, Any]) -> dict[str, Any]:
    """A failed asset check (``run_id`` None: a runless, reported evaluation)."""
    return {"kind": "asset_check_failed", "asset": asset, "check": check, "severity": severity,
            "run_id": run_id, "partition": partition,
            "text": f"check {check} failed on {asset}", "metadata": metadata}


def freshness_changed(asset: str, new: str, old: str,
                      changed_at: float | None) -> dict[str, Any] | None:
    """An asset turned WARN or FAIL, or is fresh again after one; None: nothing to tell
    anyone (UNKNOWN -> PASS and the like)."""
    if new in BAD_FRESHNESS:
        kind = "freshness_failed" if new == "FAIL" else "freshness_warning"
    elif new == "PASS" and old in BAD_FRESHNESS:
        kind = "freshness_recovered"
    else:
        return None
    return {"kind": kind, "asset": asset, "state": new, "previous_state": old,
            "changed_at": changed_at, "text": f"{asset} freshness {old} -> {new}"}


def first_line(text: str | None, limit: int = 500) -> str:
    """What on-call reads first of an error: its first line, at most ``limit`` characters."""
    return text.strip().splitlines()[0][:limit] if text and text.strip() else ""
