"""Alert delivery: one JSON message, logged and POSTed to the webhook.

``MFG_ALERT_WEBHOOK_URL`` (Slack/Teams/any JSON endpoint, read through ``settings.py``)
receives each message; without it, alerts are only logged. The Dagster sensors that find the
failures live in ``defs/alerts.py``; this module is what they (and anything else) call to send.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

from mfg_assets.settings import get_settings

WEBHOOK_ENV = "MFG_ALERT_WEBHOOK_URL"
log = logging.getLogger(__name__)


def post_alert(message: dict[str, Any], url: str | None = None, timeout_s: float = 5.0) -> bool:
    """Log the alert and POST it as JSON to the webhook; False when not sent.

    A dead webhook must not fail the caller (the alert is in the log either way).
    """
    url = url if url is not None else get_settings().alerts.webhook_url
    log.warning("ALERT %s", json.dumps(message, sort_keys=True, default=str))
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
