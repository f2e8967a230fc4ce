"""The bundle store: bundles, per-edge assignments and device registrations.

One URI says where it lives; S3 is configuration, not code (pyarrow.fs speaks both):

    MFG_BUNDLE_STORE unset       <data dir>/bundles        (the embedded default)
    MFG_BUNDLE_STORE=/srv/b      a local or mounted folder
    MFG_BUNDLE_STORE=s3://b/p    an S3 bucket (credentials/endpoint from the AWS_* variables)

Layout under the root:

    bundles/{bundle_id}/...      immutable bundle folders (manifest uploaded last)
    assignments/{edge_id}.json   which bundle an edge should run (rewritten on change)
    devices/{edge_id}.json       where an edge sits in the UNS and what it listens to

The assignment is deliberately not an MQTT message: the store is the one source of truth
that an edge can read after a restart or a long offline spell, and the gateway would have
to quarantine an extra class of UNS topics. An edge polls its assignment (a few bytes).
Assignments are not signed; they are checked against the signed manifest instead. An
assignment names a bundle by a strict id (:func:`~mfg_assets.edge.bundle.check_bundle_id`: no
separators, no dots-only, at most 128 ASCII characters), and the edge runs a bundle only when
its signed manifest names that same id and this edge. So a forged assignment can at worst
pick another fleet-signed bundle built for the same edge (an older one, say); it cannot make
the edge run unsigned code or touch a file outside its cache. Signing assignments too would
put the fleet's private key into every rollout step and operator command that assigns.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mfg_assets.edge import cache
from mfg_assets.edge.bundle import BundleError, check_bundle_id
from mfg_assets.edge.storefs import open_store_fs
from mfg_assets.settings import get_settings
from mfg_assets.uns.topics import check_segment

STORE_ENV = "MFG_BUNDLE_STORE"
PLACE = ("enterprise", "site", "area", "line", "cell")


def default_store_uri() -> str:
    return get_settings().bundle_store_uri  # MFG_BUNDLE_STORE, else <data dir>/bundles


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Assignment:
    edge_id: str
    bundle_id: str
    assigned_at: str = field(default_factory=_now)
    by: str = "operator"
    reason: str = ""
    rollout_id: str | None = None

    @classmethod
    def from_dict(cls, doc: Any) -> Assignment | None:
        """Read a stored assignment; None when it is not one. ``bundle_id`` is kept as found
        (checked by whoever acts on it): a forged document must be refusable, not fatal."""
        if not isinstance(doc, dict) or not isinstance(doc.get("edge_id"), str):
            return None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known and k != "bundle_id"},
                   bundle_id=doc.get("bundle_id"))  # type: ignore[arg-type]


# camera: defect classes per image; assembly: missing parts per image; line: sensor windows
KINDS = ("camera", "assembly", "line")


@dataclass(frozen=True)
class Device:
    """An edge device: its place in the ISA-95 hierarchy and the UNS topics it scores."""

    edge_id: str
    kind: str  # "camera" / "assembly" (inspection images) or "line" (sensor readings)
    place: dict[str, str]  # enterprise, site, area, line, cell
    sources: tuple[str, ...]  # MQTT topic filters it subscribes to
    firmware: str = "mfg-edge/0.1.0"

    def __post_init__(self) -> None:
        check_segment("edge_id", self.edge_id)
        if self.kind not in KINDS:
            raise ValueError(f"device kind {self.kind!r}: one of {', '.join(KINDS)}")
        missing = [name for name in PLACE if name not in self.place]
        if missing:
            raise ValueError(f"device {self.edge_id}: place lacks {missing}")
        for name in PLACE:
            check_segment(name, self.place[name])
        if not self.sources:
            raise ValueError(f"device {self.edge_id}: no source topics")

    def topic(self, message_class: str) -> str:
        return "/".join([*(self.place[name] for name in PLACE), self.edge_id, message_class])

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["sources"] = list(self.sources)
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Device:
        return cls(**{**doc, "sources": tuple(doc["sources"])})


class BundleStore:
    def __init__(self, uri: str | Path | None = None) -> None:
        self.uri = str(uri or default_store_uri())
        self.fs = open_store_fs(self.uri)  # a plain path: stdlib; a URI: pyarrow.fs
        self.root = self.fs.root.rstrip("/")

    def __repr__(self) -> str:
        return f"BundleStore({self.uri!r})"

    def _path(self, *parts: str) -> str:
        for part in parts:
            if not part or "/" in part or part.startswith("."):
                raise ValueError(f"bad store path component {part!r}")
        return "/".join([self.root, *parts])

    # -- small JSON documents --------------------------------------------------------------

    def _write_json(self, doc: dict[str, Any], *parts: str) -> None:
        self.fs.write(self._path(*parts), json.dumps(doc, indent=2, sort_keys=True).encode())

    def _read_json(self, *parts: str) -> Any:
        try:
            return json.loads(self.fs.read(self._path(*parts)))
        except FileNotFoundError:
            return None

    # -- bundles -------------------------------------------------------------------------------

    def publish(self, bundle_dir: Path) -> str:
        """Upload a built bundle folder; return its id. The manifest goes last, so a reader
        never sees a signed manifest whose files are still on their way."""
        from mfg_assets.edge.bundle import MANIFEST_FILE, SIGNATURE_FILE

        bundle_dir = Path(bundle_dir)
        manifest = json.loads((bundle_dir / MANIFEST_FILE).read_bytes())
        bundle_id = check_bundle_id(manifest["bundle_id"])
        target = self._path("bundles", bundle_id)
        last = (SIGNATURE_FILE, MANIFEST_FILE)
        names = sorted(p.name for p in bundle_dir.iterdir() if p.name not in last)
        for name in [*names, *last]:
            self.fs.write(f"{target}/{name}", (bundle_dir / name).read_bytes())
        return bundle_id

    def bundles(self) -> list[str]:
        return sorted(name for name, kind in self.fs.list(self._path("bundles")) if kind == "dir")

    def has(self, bundle_id: str) -> bool:
        return self.fs.kind(self._path("bundles", check_bundle_id(bundle_id))) == "dir"

    def fetch(self, bundle_id: str, cache_dir: Path) -> Path:
        """Copy a bundle into ``cache_dir/bundle_id`` (unverified: verify before use).

        Raises BundleError for a bad id or a store entry that is not plain files (a symlink
        in a local store would copy whatever it points at), FileNotFoundError when missing.
        """
        target = cache.entry(cache_dir, bundle_id)  # checked id, inside the cache
        if os.path.lexists(target):
            return target  # verified (links refused) before use; removed if refused
        source = self._path("bundles", bundle_id)
        if self.fs.kind(source) not in ("dir", None):
            raise BundleError(f"bundle {bundle_id}: not a folder in the store {self.uri}")
        entries = self.fs.list(source)
        if not entries:
            raise FileNotFoundError(f"bundle {bundle_id} is not in the store {self.uri}")
        odd = sorted(name for name, kind in entries if kind != "file")
        if odd:
            raise BundleError(
                f"bundle {bundle_id}: {odd} not a regular file in the store (symlink, folder "
                "or special file)"
            )
        partial = target.with_name(target.name + f".{uuid.uuid4().hex[:8]}.partial")
        partial.mkdir(parents=True)
        for name, _kind in entries:
            cache.check_name(name)
            (partial / name).write_bytes(self.fs.read(f"{source}/{name}"))
        try:
            partial.rename(target)
        except OSError:  # another fetch won the race
            shutil.rmtree(partial, ignore_errors=True)
        return target

    # -- assignments and devices -------------------------------------------------------------

    def assign(
        self,
        edge_id: str,
        bundle_id: str,
        *,
        by: str = "operator",
        reason: str = "",
        rollout_id: str | None = None,
    ) -> Assignment:
        check_segment("edge_id", edge_id)
        check_bundle_id(bundle_id)
        if not self.has(bundle_id):
            raise FileNotFoundError(f"bundle {bundle_id} is not in the store {self.uri}")
        assignment = Assignment(edge_id, bundle_id, by=by, reason=reason, rollout_id=rollout_id)
        self._write_json(asdict(assignment), "assignments", f"{edge_id}.json")
        return assignment

    def assignment(self, edge_id: str) -> Assignment | None:
        return Assignment.from_dict(self._read_json("assignments", f"{edge_id}.json"))

    def register(self, device: Device) -> None:
        self._write_json(device.to_dict(), "devices", f"{device.edge_id}.json")

    def device(self, edge_id: str) -> Device | None:
        doc = self._read_json("devices", f"{edge_id}.json")
        return Device.from_dict(doc) if doc else None

    def devices(self) -> list[Device]:
        names = [name for name, _kind in self.fs.list(self._path("devices"))]
        found = (self.device(n.removesuffix(".json")) for n in names if n.endswith(".json"))
        return [d for d in found if d is not None]
