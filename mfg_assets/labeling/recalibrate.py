"""An edge's threshold, recalibrated on its labelled windows at the next bundle.

The bundle builder calibrates a threshold on the edge's recent normal data (a score
quantile). Operators then tell us where that was wrong: a rejected flag is a normal window
that scored above the threshold (false alarm), a confirmed flag a fault it caught. The new
threshold is raised just enough to clear the false alarms that lie below every labelled fault
the current threshold catches, and never so far that one of those faults is missed: the false
alarm rate on the labelled windows falls and the recall on the labelled faults stays.

Raising is the only move: with no labelled fault to bound it, or too few rejected flags to
say the alarms are systematic, the threshold stays where it is and the reason says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from mfg_assets.labeling.store import judged_predictions


@dataclass(frozen=True)
class Recalibration:
    threshold: float
    previous: float
    changed: bool
    reason: str
    n_normal: int
    n_fault: int
    false_alarms_before: int  # labelled normal windows above the previous threshold
    false_alarms_after: int
    recall_before: float | None  # share of labelled faults above the threshold
    recall_after: float | None

    def as_dict(self) -> dict[str, Any]:
        """For the bundle manifest's ``threshold`` block (how it was calibrated)."""
        return asdict(self)


def _rates(normal: np.ndarray, fault: np.ndarray, t: float) -> tuple[int, float | None]:
    recall = float((fault > t).mean()) if fault.size else None
    return int((normal > t).sum()), recall


def recalibrate_threshold(
    scores: np.ndarray | list[float],
    is_fault: np.ndarray | list[bool],
    current: float,
    min_normal: int = 20,
    min_fault: int = 1,
) -> Recalibration:
    """The new threshold from labelled windows' ``scores`` (the model that will ship, higher =
    more abnormal; flagged when ``score > threshold``) and their truth from the verdicts."""
    s = np.asarray(scores, dtype=float)
    f = np.asarray(is_fault, dtype=bool)
    keep = np.isfinite(s)
    normal, fault = s[keep & ~f], s[keep & f]
    fa_before, recall_before = _rates(normal, fault, current)

    def result(threshold: float, reason: str) -> Recalibration:
        fa_after, recall_after = _rates(normal, fault, threshold)
        return Recalibration(float(threshold), float(current), threshold != current, reason,
                             int(normal.size), int(fault.size), fa_before, fa_after,
                             recall_before, recall_after)

    if fa_before == 0:
        return result(current, "no labelled false alarm above the current threshold")
    if normal.size < min_normal:
        return result(current, f"{normal.size} labelled normal windows; need {min_normal} "
                               "before moving the threshold")
    caught = fault[fault > current]
    if fault.size < min_fault or caught.size == 0:
        return result(current, "no labelled fault the threshold catches: raising it could "
                               "lose recall nobody can check")
    ceiling = float(caught.min())  # at or above this, a caught fault would be missed
    below = normal[(normal > current) & (normal < ceiling)]
    if below.size == 0:
        return result(current, "every false alarm scores at or above a labelled fault: "
                               "a threshold cannot separate them (the model must)")
    # halfway between the highest false alarm we can clear and the lowest caught fault:
    # the same labelled result as any value in between, with room on both sides
    new = (float(below.max()) + ceiling) / 2.0
    if not current < new < ceiling:  # float spacing: no room between them
        return result(current, "no room between the false alarms and the lowest fault")
    return result(new, f"raised above {below.size} of {fa_before} labelled false alarms, "
                       f"below the lowest of {caught.size} caught faults")


def labelled_windows(predictions: pl.DataFrame, labels: pl.DataFrame, edge_id: str,
                     model: str | None = None) -> pl.DataFrame:
    """An edge's judged predictions: source_id, bundle_id, score, threshold, flagged and
    ``truth`` (True fault, False normal; unknown verdicts left out), oldest first. At the
    next bundle, rescore these inputs with the model that will ship before recalibrating."""
    rows = predictions.filter(pl.col("edge_id") == edge_id)
    if model is not None:
        rows = rows.filter(pl.col("model") == model)
    return (judged_predictions(rows, labels).filter(pl.col("truth").is_not_null())
            .select("source_id", "bundle_id", "score", "threshold", "flagged", "truth")
            .sort("source_id"))
