"""What the Dagster UI asks the webserver for a run's captured logs (GraphQL over HTTP).

The queries of the UI's CapturedLogPanel: a run's ``LogsCapturedEvent`` (its file key), then
``capturedLogs`` and ``capturedLogsMetadata`` for the log key ``[run id, "compute_logs",
file key]``. Shared by the compute-log tests on SeaweedFS and on ``make stack``.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

CAPTURED_EVENTS = """
query CapturedLogsEvents($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      eventConnection {
        events {
          __typename
          ... on LogsCapturedEvent { fileKey stepKeys }
        }
      }
    }
  }
}
"""

# as the UI's CapturedLogPanel asks (js_modules: CapturedLogPanel.tsx)
CAPTURED_LOGS = """
query CapturedLogsQuery($logKey: [String!]!, $cursor: String, $limit: Int) {
  capturedLogs(logKey: $logKey, cursor: $cursor, limit: $limit) { stdout stderr cursor }
}
"""

CAPTURED_LOGS_METADATA = """
query CapturedLogsMetadataQuery($logKey: [String!]!) {
  capturedLogsMetadata(logKey: $logKey) {
    stdoutDownloadUrl stdoutLocation stderrDownloadUrl stderrLocation
  }
}
"""


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{url}/graphql", body,
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    assert not answer.get("errors"), answer["errors"]
    return answer["data"]


def captured_log_key(url: str, run_id: str) -> list[str] | None:
    """The log key of a run's first captured compute logs, as the UI finds it."""
    events = graphql(url, CAPTURED_EVENTS, {"runId": run_id})["runOrError"]
    captured = [e for e in events["eventConnection"]["events"]
                if e["__typename"] == "LogsCapturedEvent"]
    return [run_id, "compute_logs", captured[0]["fileKey"]] if captured else None
