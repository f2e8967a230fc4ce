"""The edge's local bundle cache: every path is checked to lie inside it before use.

Bundle ids come from an unsigned assignment file, so an id is a name, never a path: it is
checked (:func:`~mfg_assets.edge.bundle.check_bundle_id`) and the entry's folder must be the
cache itself. Removal never follows a link: a planted symlink is unlinked, its target kept.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mfg_assets.edge.bundle import BundleError, check_bundle_id


def check_name(name: str) -> str:
    """A file name inside a bundle: one plain path component."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise BundleError(f"bad file name {name!r} in a bundle")
    return name


def entry(cache_dir: Path | str, bundle_id: object) -> Path:
    """``cache_dir/bundle_id`` for a valid id; BundleError for anything else."""
    root = Path(cache_dir).resolve()
    path = root / check_bundle_id(bundle_id)
    # not path.resolve(): that would follow a planted link. The id has no separator and is
    # not "." or "..", so its parent is the cache; check anyway, cheaply.
    if path.parent != root or os.path.normpath(path) != str(path):
        raise BundleError(f"bundle id {bundle_id!r} leaves the cache {root}")
    return path


def remove(cache_dir: Path | str, bundle_id: object) -> None:
    """Delete one cache entry (a refused bundle); a link is unlinked, never followed."""
    path = entry(cache_dir, bundle_id)
    if path.is_symlink() or (os.path.lexists(path) and not path.is_dir()):
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
