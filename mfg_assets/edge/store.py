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
Assignments are not signed: the worst a forged one can do is point at another bundle,
and every bundle is verified against the fleet key before it runs.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from mfg_assets.settings import get_settings
from mfg_assets.uns.topics import check_segment

STORE_ENV = "MFG_BUNDLE_STORE"
PLACE = ("enterprise", "site", "area", "line", "cell")


def default_store_uri() -> str:
    return os.environ.get(STORE_ENV) or str(get_settings().data_dir / "bundles")


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


@dataclass(frozen=True)
class Device:
    """An edge device: its place in the ISA-95 hierarchy and the UNS topics it scores."""

    edge_id: str
    kind: str  # "camera" (inspection images) or "line" (sensor readings)
    place: dict[str, str]  # enterprise, site, area, line, cell
    sources: tuple[str, ...]  # MQTT topic filters it subscribes to
    firmware: str = "mfg-edge/0.1.0"

    def __post_init__(self) -> None:
        check_segment("edge_id", self.edge_id)
        if self.kind not in ("camera", "line"):
            raise ValueError(f"device kind {self.kind!r}: camera or line")
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
        if "://" in self.uri:
            self.fs, root = pafs.FileSystem.from_uri(self.uri)
        else:  # a plain path: local filesystem, made absolute
            self.fs, root = pafs.LocalFileSystem(), str(Path(self.uri).resolve())
        self.root = root.rstrip("/")
        self._local = isinstance(self.fs, pafs.LocalFileSystem)

    def __repr__(self) -> str:
        return f"BundleStore({self.uri!r})"

    def _path(self, *parts: str) -> str:
        for part in parts:
            if not part or "/" in part or part.startswith("."):
                raise ValueError(f"bad store path component {part!r}")
        return "/".join([self.root, *parts])

    # -- small JSON documents --------------------------------------------------------------

    def _write_json(self, doc: dict[str, Any], *parts: str) -> None:
        path = self._path(*parts)
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        data = json.dumps(doc, indent=2, sort_keys=True).encode()
        if not self._local:  # an object PUT is atomic already
            with self.fs.open_output_stream(path) as out:
                out.write(data)
            return
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        with self.fs.open_output_stream(tmp) as out:
            out.write(data)
        self.fs.move(tmp, path)  # atomic rename: a reader sees the old or the new document

    def _read_json(self, *parts: str) -> dict[str, Any] | None:
        try:
            with self.fs.open_input_stream(self._path(*parts)) as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None

    # -- bundles -------------------------------------------------------------------------------

    def publish(self, bundle_dir: Path) -> str:
        """Upload a built bundle folder; return its id. The manifest goes last, so a reader
        never sees a signed manifest whose files are still on their way."""
        from mfg_assets.edge.bundle import MANIFEST_FILE, SIGNATURE_FILE

        bundle_dir = Path(bundle_dir)
        manifest = json.loads((bundle_dir / MANIFEST_FILE).read_bytes())
        bundle_id = manifest["bundle_id"]
        target = self._path("bundles", bundle_id)
        self.fs.create_dir(target, recursive=True)
        last = (SIGNATURE_FILE, MANIFEST_FILE)
        names = sorted(p.name for p in bundle_dir.iterdir() if p.name not in last)
        for name in [*names, *last]:
            with self.fs.open_output_stream(f"{target}/{name}") as out:
                out.write((bundle_dir / name).read_bytes())
        return bundle_id

    def bundles(self) -> list[str]:
        selector = pafs.FileSelector(self._path("bundles"), allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def has(self, bundle_id: str) -> bool:
        info = self.fs.get_file_info(self._path("bundles", bundle_id))
        return info.type == pafs.FileType.Directory

    def fetch(self, bundle_id: str, cache_dir: Path) -> Path:
        """Copy a bundle into ``cache_dir/bundle_id`` (unverified: verify before use)."""
        target = Path(cache_dir) / bundle_id
        if target.exists():
            return target
        source = self._path("bundles", bundle_id)
        infos = self.fs.get_file_info(pafs.FileSelector(source, allow_not_found=True))
        if not infos:
            raise FileNotFoundError(f"bundle {bundle_id} is not in the store {self.uri}")
        partial = target.with_name(target.name + f".{uuid.uuid4().hex[:8]}.partial")
        partial.mkdir(parents=True)
        for info in infos:
            if info.type == pafs.FileType.File:
                with self.fs.open_input_stream(info.path) as f:
                    (partial / info.base_name).write_bytes(f.read())
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
        if not self.has(bundle_id):
            raise FileNotFoundError(f"bundle {bundle_id} is not in the store {self.uri}")
        assignment = Assignment(edge_id, bundle_id, by=by, reason=reason, rollout_id=rollout_id)
        self._write_json(asdict(assignment), "assignments", f"{edge_id}.json")
        return assignment

    def assignment(self, edge_id: str) -> Assignment | None:
        doc = self._read_json("assignments", f"{edge_id}.json")
        return Assignment(**doc) if doc else None

    def register(self, device: Device) -> None:
        self._write_json(device.to_dict(), "devices", f"{device.edge_id}.json")

    def device(self, edge_id: str) -> Device | None:
        doc = self._read_json("devices", f"{edge_id}.json")
        return Device.from_dict(doc) if doc else None

    def devices(self) -> list[Device]:
        selector = pafs.FileSelector(self._path("devices"), allow_not_found=True)
        names = [i.base_name for i in self.fs.get_file_info(selector)]
        found = (self.device(n.removesuffix(".json")) for n in names if n.endswith(".json"))
        return [d for d in found if d is not None]
