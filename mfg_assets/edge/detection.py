"""Missing-part decisions from a detector's output (numpy only: runs on the edge and in training).

The exported detector ends in its own decode (heatmap peaks, top-K), so its output per
image is a fixed ``(K, 6)`` array of ``[score, class, x0, y0, x1, y1]`` in pixels of the
model's input, sorted by score. A bundle's preprocessing carries the board's *layout*:
the slots a complete assembly fills, each ``{"cls": name, "cx", "cy", "radius"}``. A slot
is filled by the best detection of its class whose centre lies within its radius; its
abnormality is ``1 - that score`` (1 when nothing is there). The image's score is the
largest slot abnormality ("higher = more abnormal", like every other kind), and a slot is
reported missing when its abnormality exceeds the edge's own threshold.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SCORE, CLS, X0, Y0, X1, Y1 = range(6)


def slot_abnormality(dets: np.ndarray, classes: list[str], layout: list[dict[str, Any]]
                     ) -> np.ndarray:
    """One value per slot in [0, 1]: 1 - the best matching detection's score."""
    cx = 0.5 * (dets[:, X0] + dets[:, X1])
    cy = 0.5 * (dets[:, Y0] + dets[:, Y1])
    index = {name: i for i, name in enumerate(classes)}
    out = np.ones(len(layout), dtype=np.float64)
    for k, slot in enumerate(layout):
        near = np.hypot(cx - float(slot["cx"]), cy - float(slot["cy"])) <= float(slot["radius"])
        mine = near & (np.rint(dets[:, CLS]) == index.get(slot["cls"], -1))
        if mine.any():
            out[k] = 1.0 - float(dets[mine, SCORE].max())
    return out


def image_scores(outputs: np.ndarray, classes: list[str], layout: list[dict[str, Any]]
                 ) -> np.ndarray:
    """Per image (``outputs``: (n, K, 6)): its largest slot abnormality."""
    if not layout:
        return np.zeros(len(outputs))
    return np.array([slot_abnormality(d, classes, layout).max() for d in outputs])


def decide(dets: np.ndarray, classes: list[str], layout: list[dict[str, Any]],
           threshold: float, box_score: float) -> dict[str, Any]:
    """What a person at the line needs: missing slots, the parts found (boxes), the score."""
    abnormal = slot_abnormality(dets, classes, layout)
    missing = [
        {"cls": slot["cls"], "slot": k, "cx": round(float(slot["cx"]), 1),
         "cy": round(float(slot["cy"]), 1)}
        for k, slot in enumerate(layout) if abnormal[k] > threshold
    ]
    keep = dets[dets[:, SCORE] >= box_score]
    found = [
        {"cls": _name(classes, d[CLS]), "score": round(float(d[SCORE]), 3),
         "box": [round(float(v), 1) for v in d[X0:Y1 + 1]]}
        for d in keep
    ]
    return {"missing": missing, "found": found,
            "score": float(abnormal.max()) if len(abnormal) else 0.0}


def _name(classes: list[str], value: float) -> str:
    index = int(np.rint(value))
    return classes[index] if 0 <= index < len(classes) else "?"
