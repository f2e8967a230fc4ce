"""What `mfg` prints: progress on stderr, result tables that fit the terminal, clean CSV or
JSON when the output goes to a pipe, and none of the libraries' own chatter.

Plain functions without Dagster; `mfg --help` must stay instant, so rich and polars are
imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import IO, Any

# Library loggers that speak at INFO (or louder) about things a person did not ask for.
QUIET_LOGGERS: dict[str, int] = {
    "prophet": logging.WARNING,
    # "Importing plotly failed. Interactive plots will not work." at ERROR on every import:
    # plotly is optional and nothing here draws Prophet's interactive plots.
    "prophet.plot": logging.CRITICAL,
    "cmdstanpy": logging.WARNING,
    "mlflow": logging.WARNING,  # "Creating initial MLflow database tables...", migrations
    "alembic": logging.WARNING,
    "urllib3": logging.WARNING,
}
# Warning messages (regexes) from libraries about their own API status, not the user's work.
QUIET_WARNINGS = (
    r".*is currently in (beta|preview)",  # dagster BetaWarning / PreviewWarning
    r".*is deprecated and will be removed",  # library-internal deprecations
    r".*Importing plotly failed",
)


def quiet_third_parties() -> None:
    """Silence library chatter for this process (and MLflow's in child processes)."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read by MLflow at import
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


@contextlib.contextmanager
def progress(description: str, total: float | None = None,
             stream: IO[str] | None = None) -> Iterator[Callable[[float], None]]:
    """A progress bar on stderr (a spinner with elapsed time when ``total`` is unknown).

    Yields ``advance(n)``. Nothing is drawn when stderr is not a terminal, so logs and
    pipes get only the command's own lines.
    """
    stream = stream or sys.stderr
    if not is_terminal(stream):
        yield lambda n=1: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=Console(file=stream), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def write_frame(frame: Any, fmt: str = "auto", max_rows: int = 50,
                out: IO[str] | None = None) -> None:
    """Print a polars frame: ``table`` (fits the terminal), ``csv`` or ``json``.

    ``auto`` is a table on a terminal and CSV otherwise, so ``mfg sql ... | sort`` gets
    one clean line per row. An empty result is one line in a table, a header in CSV.
    """
    out = out or sys.stdout
    if fmt == "auto":
        fmt = "table" if is_terminal(out) else "csv"
    if fmt == "csv":
        out.write(frame.write_csv())
    elif fmt == "json":
        out.write(frame.write_json() + "\n")
    elif frame.height == 0:
        out.write(f"no rows (columns: {', '.join(frame.columns) or 'none'})\n")
    else:
        _write_table(frame, max_rows, out)


def _write_table(frame: Any, max_rows: int, out: IO[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    numeric = {name for name, dtype in frame.schema.items() if dtype.is_numeric()}
    for name in frame.columns:
        table.add_column(name, justify="right" if name in numeric else "left",
                         overflow="fold")
    for row in frame.head(max_rows).iter_rows():
        table.add_row(*(_cell(value) for value in row))
    width = None if is_terminal(out) else 200  # a file gets a fixed, readable width
    Console(file=out, width=width, highlight=False).print(table)
    if frame.height > max_rows:
        out.write(f"{frame.height} rows, first {max_rows} shown (--max-rows)\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


# -- numbers a person reads (asset catalog, summaries) --------------------------------


def rounded(value: Any, digits: int = 4) -> Any:
    """A float to ``digits`` significant digits (0.8506189 -> 0.8506); anything else as is.

    Metric values in the UI are read, not computed with; the MLflow run keeps full precision.
    """
    if isinstance(value, float) and value == value and value not in (float("inf"), float("-inf")):
        return float(f"{value:.{digits}g}")
    return value


def rounded_all(values: dict[str, Any], digits: int = 4) -> dict[str, Any]:
    return {key: rounded(value, digits) for key, value in values.items()}
