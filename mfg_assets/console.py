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
from collections.abc import Iterator
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


class Bar:
    """What :func:`progress` yields: ``bar(n)`` advances by ``n``; ``bar.step(phase, done,
    total)`` is the callback the work functions take (``on_progress``): ``done`` of
    ``total`` units of the current ``phase`` (the bar restarts when the phase changes).

    This one draws nothing (stderr is not a terminal); :func:`progress` gives a drawing one.
    """

    def __call__(self, n: float = 1) -> None:
        pass

    def step(self, phase: str, done: int, total: int) -> None:
        pass


class _RichBar(Bar):
    def __init__(self, bar: Any, task: Any, description: str, width: int) -> None:
        self._bar, self._task, self._description, self._width = bar, task, description, width

    def __call__(self, n: float = 1) -> None:
        self._bar.advance(self._task, n)

    def step(self, phase: str, done: int, total: int) -> None:
        # the phase (the step, the file) says most: the description gives way first
        room = self._width - len(phase) - 2
        label = (f"{_fit(self._description, room)}: {phase}" if phase and room >= 12
                 else _fit(f"{self._description}: {phase}" if phase else self._description,
                           self._width))
        self._bar.update(self._task, description=label, completed=done,
                         total=max(total, 1))


@contextlib.contextmanager
def progress(description: str, total: float | None = None,
             stream: IO[str] | None = None, unit: str = "") -> Iterator[Bar]:
    """A transient progress bar on stderr (a spinner with elapsed time until a total is
    known: ``total`` here, or the first ``bar.step``). ``unit="bytes"`` counts in kB/MB.

    Nothing is drawn when stderr is not a terminal, so logs and pipes get only the
    command's own lines.
    """
    stream = stream or sys.stderr
    if not is_terminal(stream):
        yield Bar()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    # a task without a total draws a pulsing bar and no M/N, so the columns can be fixed
    count = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}"),
                          BarColumn(bar_width=16), count, TimeElapsedColumn()]
    console = Console(file=stream)
    # the description gets what the other columns leave (spinner, bar, count, time: ~44)
    width = max(20, console.width - 44)
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(_fit(description, width), total=total)
        yield _RichBar(bar, task, description, width)


def _fit(text: str, width: int) -> str:
    """``text`` in ``width`` characters: its start (what is done) and its end (the phase,
    the file) kept, the middle (a long root path) cut."""
    if len(text) <= width:
        return text
    head = (width - 1) // 3
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


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
