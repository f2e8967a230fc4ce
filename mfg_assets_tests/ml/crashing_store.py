"""A checkpoint store that loses its machine after a number of writes (resume tests)."""

from __future__ import annotations

from pathlib import Path

from mfg_assets.ml import checkpoint


class Crash(Exception):
    """Stands in for the machine going away after some checkpoint writes."""


class CrashingStore(checkpoint.DirectoryStore):
    """A real directory store that raises :class:`Crash` after ``after_writes`` writes
    (``left = -1`` lets a retry write on) and records the epoch of every write."""

    def __init__(self, root: Path, after_writes: int) -> None:
        super().__init__(root)
        self.left = after_writes
        self.epochs: list[int] = []

    def write(self, name: str, slot: int, data: bytes, epoch: int) -> None:
        super().write(name, slot, data, epoch)
        self.epochs.append(epoch)
        self.left -= 1
        if self.left == 0:
            raise Crash(f"gone after epoch {epoch}")
