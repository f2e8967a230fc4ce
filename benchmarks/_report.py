"""The benchmarks' shared output: one line per figure, and the same figures as flat JSON."""

from __future__ import annotations

import json
from pathlib import Path

from mfg_assets.settings import get_settings


def report(name: str, figures: dict[str, float]) -> Path:
    """Print each figure and write ``{figure: number}`` to ``<data dir>/bench/<name>.json``."""
    for key, value in figures.items():
        print(f"{key}: {value:,.3f}" if isinstance(value, float) else f"{key}: {value}")
    out = get_settings().data_dir / "bench" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({k: round(float(v), 6) for k, v in figures.items()}, indent=2))
    print(f"wrote {out}")
    return out
