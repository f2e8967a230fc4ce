"""Figures for model runs, rendered straight to PNG bytes.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend switch),
so it is safe in worker processes and threads and never opens a window.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def to_png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def error_histograms(panels: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str) -> bytes:
    """One panel per group: scores of normal vs fault rows, with the threshold."""
    fig = Figure(figsize=(4.2 * max(1, len(panels)), 3.2))
    for k, (name, (normal, fault, threshold)) in enumerate(sorted(panels.items()), start=1):
        ax = fig.add_subplot(1, max(1, len(panels)), k)
        scores = np.concatenate([normal, fault])
        scores = scores[np.isfinite(scores) & (scores > 0)]
        if scores.size == 0:
            continue
        bins = np.geomspace(scores.min(), max(scores.max(), threshold * 1.01), 40)
        ax.hist(normal, bins=bins, alpha=0.6, label=f"normal ({len(normal)})")
        ax.hist(fault, bins=bins, alpha=0.6, label=f"fault ({len(fault)})")
        ax.axvline(threshold, color="k", linestyle="--", label="threshold")
        ax.set_xscale("log")
        ax.set_title(name)
        ax.set_xlabel("reconstruction error")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return to_png(fig)


def confusion_matrix(matrix: np.ndarray, labels: Sequence[str], title: str) -> bytes:
    fig = Figure(figsize=(1.2 * len(labels) + 2.5, 1.0 * len(labels) + 2.0))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = matrix.max() if matrix.size else 0
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            color = "white" if matrix[i, j] > top / 2 else "black"
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", color=color)
    ax.set_title(title)
    return to_png(fig)


def bar_chart(values: dict[str, float], errors: dict[str, float], title: str, xlabel: str) -> bytes:
    names = sorted(values, key=lambda n: values[n])
    fig = Figure(figsize=(6, 0.35 * len(names) + 1.5))
    ax = fig.add_subplot(1, 1, 1)
    ax.barh(names, [values[n] for n in names], xerr=[errors.get(n, 0.0) for n in names])
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return to_png(fig)


def scatter(actual: np.ndarray, predicted: np.ndarray, title: str, label: str) -> bytes:
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(actual, predicted, s=4, alpha=0.4)
    lo, hi = float(np.min(actual)), float(np.max(actual))
    ax.plot([lo, hi], [lo, hi], "k--", linewidth=1)
    ax.set_xlabel(f"actual {label}")
    ax.set_ylabel(f"predicted {label}")
    ax.set_title(title)
    return to_png(fig)


def forecasts(panels: list[dict[str, np.ndarray | str | float | None]], title: str) -> bytes:
    """Panels of history, forecast with its interval, the cutoff and the limit."""
    n = max(1, len(panels))
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(4.8 * cols, 3.0 * rows))
    for k, panel in enumerate(panels, start=1):
        ax = fig.add_subplot(rows, cols, k)
        ax.plot(panel["ds"], panel["y"], "k.", markersize=3, label="actual")
        ax.plot(panel["fc_ds"], panel["yhat"], "C0-", label="forecast")
        ax.fill_between(panel["fc_ds"], panel["lower"], panel["upper"], color="C0", alpha=0.25)
        ax.axvline(panel["cutoff"], color="grey", linestyle=":")
        if panel.get("limit") is not None:
            ax.axhline(panel["limit"], color="C3", linestyle="--", label="limit")
        ax.set_title(str(panel["name"]), fontsize=9)
        ax.tick_params(labelsize=7)
        for tick in ax.get_xticklabels():
            tick.set_rotation(30)
    fig.suptitle(title)
    return to_png(fig)
