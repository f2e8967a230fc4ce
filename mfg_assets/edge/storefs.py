"""The few file operations the bundle store needs, on a local folder or an object store.

A local folder (the embedded default, a mounted share) needs only the standard library, so
an edge with a local store installs nothing for it. ``s3://`` and other URIs go through
``pyarrow.fs``, imported only then (``pip install 'mfg_assets[edge,s3]'``).

Entry kinds are reported without following links: a symlink is ``"other"``, never the
file or folder it points at, so the store can refuse it.
"""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path
from typing import Literal, Protocol

Kind = Literal["file", "dir", "other"]


class StoreFS(Protocol):
    root: str

    def read(self, path: str) -> bytes: ...  # FileNotFoundError when missing
    def write(self, path: str, data: bytes) -> None: ...  # readers see old or new, whole
    def kind(self, path: str) -> Kind | None: ...  # None when missing
    def list(self, path: str) -> list[tuple[str, Kind]]: ...  # [] when missing


class LocalFS:
    def __init__(self, root: str | Path) -> None:
        self.root = str(Path(root).resolve())

    def read(self, path: str) -> bytes:
        if self.kind(path) not in ("file", None):
            raise FileNotFoundError(f"{path} is not a regular file")
        return Path(path).read_bytes()

    def write(self, path: str, data: bytes) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)  # atomic rename: a reader sees the old or the new document

    def kind(self, path: str) -> Kind | None:
        try:
            return _kind(os.lstat(path).st_mode)
        except FileNotFoundError:
            return None

    def list(self, path: str) -> list[tuple[str, Kind]]:
        try:
            with os.scandir(path) as entries:
                return [(e.name, _kind(e.stat(follow_symlinks=False).st_mode)) for e in entries]
        except (FileNotFoundError, NotADirectoryError):
            return []


def _kind(mode: int) -> Kind:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    return "other"


class ArrowFS:
    """Any URI pyarrow.fs understands (s3://...); credentials from the AWS_* variables."""

    def __init__(self, uri: str) -> None:
        import pyarrow.fs as pafs  # only here: an edge with a local store does without it

        self._pafs = pafs
        self.fs, root = pafs.FileSystem.from_uri(uri)
        self.root = root.rstrip("/")

    def read(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as f:
            return f.read()

    def write(self, path: str, data: bytes) -> None:
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(path) as out:  # an object PUT is atomic already
            out.write(data)

    def _kind(self, info) -> Kind | None:
        types = self._pafs.FileType
        return {types.File: "file", types.Directory: "dir", types.NotFound: None}.get(
            info.type, "other"
        )

    def kind(self, path: str) -> Kind | None:
        return self._kind(self.fs.get_file_info(path))

    def list(self, path: str) -> list[tuple[str, Kind]]:
        selector = self._pafs.FileSelector(path, allow_not_found=True)
        return [(i.base_name, self._kind(i) or "other") for i in self.fs.get_file_info(selector)]


def open_store_fs(uri: str) -> StoreFS:
    return ArrowFS(uri) if "://" in uri else LocalFS(uri)
