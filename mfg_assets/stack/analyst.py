"""An analyst's way into a running stack's lakehouse, read-only.

``eval "$(python -m mfg_assets.stack env analyst)"`` then ``mfg sql "SELECT ..."`` (or polars,
or any Delta reader): the printed ``export`` lines point settings at the stack's S3 endpoint
and lake with the ``analyst`` identity, which SeaweedFS lets read and list the ``lake``
bucket and nothing else, so a query (or a mistake) can never write the plant's data.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from mfg_assets.stack.launch import LAKE_URI, Stack, StackConfig
from mfg_assets.stack.secrets import StackSecrets

ANALYST = "analyst"


class StackNotRunning(LookupError):
    pass


def analyst_env(root: Path) -> dict[str, str]:
    """The analyst's environment for the stack whose state lives under ``root``."""
    state = root / "stack.json"
    if not state.exists():
        raise StackNotRunning(f"no stack under {root} (start one with `make stack`)")
    doc = json.loads(state.read_text())
    if doc.get("stopped") or "s3" not in doc.get("ports", {}):
        raise StackNotRunning(f"the stack under {root} is not running (`make stack`)")
    secrets = StackSecrets.load(root / "secrets")
    if ANALYST not in secrets.s3:
        raise StackNotRunning(f"the stack under {root} predates the analyst identity: restart it")
    stack = Stack(StackConfig(root=root))
    stack.ports, stack.secrets = dict(doc["ports"]), secrets
    return {**stack.s3_env(ANALYST), "MFG_LAKE_URI": doc.get("lake", LAKE_URI)}


def export_lines(env: dict[str, str]) -> str:
    """POSIX shell lines; a session token or profile from the shell would override the keys."""
    lines = ["unset AWS_SESSION_TOKEN AWS_PROFILE"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items())]
    return "\n".join(lines) + "\n"
