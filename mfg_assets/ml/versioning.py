"""The code version of a model family: what its training code and its registry entry say.

A model must be retrained when the code that trains it changes, not only when the data
does. ``family_code_version`` hashes the family module's source file (read, not imported:
torch and Prophet load slowly and the Dagster definitions are built at every reload) and a
canonical text of its registry entry (metrics, floors, feature table, drift inputs): a new
floor or another feature table is a different model as much as a new layer is. The Dagster
layer sets it as the model asset's ``code_version``; the automation policy retrains on a
change (``AutomationCondition.code_version_changed``) and the promotion gate still decides.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

from mfg_assets.ml.families import FamilySpec, spec


def module_source(module: str) -> bytes:
    """The source bytes of ``module`` without executing it (its file as found by import)."""
    found = importlib.util.find_spec(module)
    if found is None or found.origin is None or not found.has_location:
        raise ValueError(f"cannot find the source of {module!r}")
    return Path(found.origin).read_bytes()


def _canonical(value: Any) -> Any:
    """JSON-able and order-stable: frozenset repr order changes with hash randomisation."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, set | frozenset):
        return sorted(_canonical(v) for v in value)
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def entry_text(entry: FamilySpec) -> str:
    """The registry entry as canonical JSON (same text in every interpreter)."""
    return json.dumps(_canonical(entry), sort_keys=True, default=str)


def family_code_version(name_or_entry: str | FamilySpec, length: int = 16) -> str:
    """sha256 of the family module's source and its registry entry, shortened."""
    entry = spec(name_or_entry) if isinstance(name_or_entry, str) else name_or_entry
    digest = hashlib.sha256()
    digest.update(module_source(entry.module))
    digest.update(b"\0")
    digest.update(entry_text(entry).encode())
    return digest.hexdigest()[:length]
