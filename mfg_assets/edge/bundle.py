"""Per-edge deployment bundles: build, sign, verify.

A bundle is a folder:

    model.onnx           the model (int8 or fp32, see the manifest's ``model.precision``)
    preprocessing.json   input spec: kind, shape, normalisation, class or feature names
    manifest.json        bundle id, edge, model name/version, lineage (Delta versions),
                         input spec, the edge's own threshold, sha256 of every other file
    manifest.sig         base64 Ed25519 signature over the exact bytes of manifest.json

The signature covers the manifest and the manifest covers every file by checksum, so one
signature check plus one hash per file proves the whole folder. :func:`verify_bundle`
refuses anything else with a :class:`BundleError` that names the problem, including a folder
holding anything but plain files: a symlink, a hard link (a name shared with a file outside
the bundle) or a special file (FIFO, device) is refused before any of it is read.

A bundle id is a name, never a path (:func:`check_bundle_id`): it names a folder in the
store and in the edge's cache, and it comes to the edge in an unsigned assignment.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import shutil
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mfg_assets.edge import signing

FORMAT = "mfg-edge-bundle/1"
MODEL_FILE = "model.onnx"
PREPROCESSING_FILE = "preprocessing.json"
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
KINDS = ("image", "sensor_window")
# ASCII letters, digits, '_', '.', '-'; starts with a letter or digit (so never "." or "..",
# never a hidden name); no separator, NUL or space; at most 128 characters.
BUNDLE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class BundleError(Exception):
    """A bundle that must not run: unsigned, tampered, incomplete or malformed."""


@dataclass(frozen=True)
class Bundle:
    """A verified bundle folder."""

    path: Path
    manifest: dict[str, Any]
    preprocessing: dict[str, Any]

    @property
    def bundle_id(self) -> str:
        return self.manifest["bundle_id"]

    @property
    def model_name(self) -> str:
        return self.manifest["model"]["name"]

    @property
    def threshold(self) -> float:
        return float(self.manifest["threshold"]["value"])

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE


def check_bundle_id(value: object) -> str:
    """Return ``value`` if it is a valid bundle id, else raise :class:`BundleError`."""
    if not isinstance(value, str) or not BUNDLE_ID_RE.fullmatch(value):
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise BundleError(
            f"bad bundle id {shown}: 1-128 ASCII letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return value


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def calibrate_threshold(scores: Iterable[float] | np.ndarray, quantile: float = 0.99) -> float:
    """The ``quantile`` of an edge's scores on its own recent normal data.

    Each edge sees its own light, machine and noise: a threshold set on the fleet's pooled
    data would alarm too often on one edge and too rarely on another.
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be within (0, 1), got {quantile}")
    values = np.asarray(list(scores) if not isinstance(scores, np.ndarray) else scores, float)
    values = values[np.isfinite(values)]
    if values.size < 10:
        raise ValueError(f"need at least 10 finite scores of normal data, got {values.size}")
    return float(np.quantile(values, quantile))


def threshold_entry(
    scores: np.ndarray | Iterable[float], quantile: float, source: str
) -> dict[str, Any]:
    """The manifest's ``threshold`` block: the value and how it was calibrated."""
    values = np.asarray(list(scores) if not isinstance(scores, np.ndarray) else scores, float)
    return {
        "value": calibrate_threshold(values, quantile),
        "quantile": quantile,
        "n_scores": int(np.isfinite(values).sum()),
        "source": source,
    }


def _canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, indent=2, sort_keys=True, allow_nan=False).encode() + b"\n"


def build_bundle(
    out_dir: Path,
    *,
    edge_id: str,
    model_file: Path,
    preprocessing: Mapping[str, Any],
    threshold: Mapping[str, Any],
    model_name: str,
    model_version: str | int,
    lineage: Mapping[str, Any] | None = None,
    export: Mapping[str, Any] | None = None,
    private_key: Ed25519PrivateKey | None = None,
    created_at: datetime | None = None,
) -> Bundle:
    """Write and sign a bundle for one edge into ``out_dir`` (which must not exist yet).

    ``lineage``: where the model comes from, e.g. ``{"mlflow_run": ..., "delta_versions":
    {"features.image_dataset": 12}}``. ``export``: :meth:`ExportResult.manifest_entry`.
    """
    kind = preprocessing.get("kind")
    if kind not in KINDS:
        raise BundleError(f"preprocessing kind {kind!r} is not one of {KINDS}")
    value = float(threshold.get("value", math.nan))
    if not math.isfinite(value):
        raise BundleError(f"threshold {threshold.get('value')!r} is not a finite number")
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} exists; a bundle is written once")
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(model_file, tmp / MODEL_FILE)
    (tmp / PREPROCESSING_FILE).write_bytes(_canonical(preprocessing))
    files = {name: sha256_file(tmp / name) for name in (MODEL_FILE, PREPROCESSING_FILE)}
    body = {
        "format": FORMAT,
        "edge_id": edge_id,
        "model": {"name": model_name, "version": str(model_version), **(export or {})},
        "lineage": dict(lineage or {}),
        "input": {k: preprocessing[k] for k in ("kind", "input") if k in preprocessing},
        "threshold": {**threshold, "value": value},
        "files": files,
    }
    # Content-addressed: the same model, preprocessing and threshold for the same edge is the
    # same bundle; anything different is a new id.
    digest = hashlib.sha256(_canonical(body)).hexdigest()[:12]
    bundle_id = check_bundle_id(f"{model_name}-v{model_version}-{edge_id}-{digest}"[:128])
    stamp = (created_at or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    manifest = {**body, "bundle_id": bundle_id, "created_at": stamp}
    raw = _canonical(manifest)
    (tmp / MANIFEST_FILE).write_bytes(raw)
    key = private_key or signing.load_private_key()
    (tmp / SIGNATURE_FILE).write_bytes(base64.b64encode(signing.sign(raw, key)) + b"\n")
    tmp.rename(out_dir)
    return Bundle(out_dir, manifest, dict(preprocessing))


def verify_bundle(path: Path, public_key: Ed25519PublicKey | None = None) -> Bundle:
    """Check signature and checksums; return the bundle or raise :class:`BundleError`."""
    path = Path(path)
    _check_plain_files(path)
    manifest_path, signature_path = path / MANIFEST_FILE, path / SIGNATURE_FILE
    if not manifest_path.exists():
        raise BundleError(f"bundle {path.name}: missing file {MANIFEST_FILE}")
    if not signature_path.exists():
        raise BundleError(f"bundle {path.name}: unsigned (missing file {SIGNATURE_FILE})")
    raw = manifest_path.read_bytes()
    try:
        signature = base64.b64decode(signature_path.read_bytes().strip(), validate=True)
    except ValueError:
        raise BundleError(f"bundle {path.name}: {SIGNATURE_FILE} is not base64") from None
    key = public_key or signing.load_public_key()
    if not signing.verify(raw, signature, key):
        raise BundleError(
            f"bundle {path.name}: bad signature on {MANIFEST_FILE} "
            "(manifest changed after signing, or signed by another key)"
        )
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise BundleError(f"bundle {path.name}: {MANIFEST_FILE} is not JSON: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise BundleError(f"bundle {path.name}: unknown format {manifest.get('format')!r}")
    files: dict[str, str] = manifest.get("files", {})
    for required in (MODEL_FILE, PREPROCESSING_FILE):
        if required not in files:
            raise BundleError(f"bundle {path.name}: manifest lists no {required}")
    for name, expected in sorted(files.items()):
        target = path / name
        if "/" in name or name.startswith(".") or not target.is_file():
            raise BundleError(f"bundle {path.name}: missing file {name}")
        actual = sha256_file(target)
        if actual != expected:
            raise BundleError(
                f"bundle {path.name}: checksum mismatch of file {name} "
                f"(manifest {expected[:12]}..., file {actual[:12]}...)"
            )
    known = {*files, MANIFEST_FILE, SIGNATURE_FILE}
    extra = sorted(p.name for p in path.iterdir() if p.name not in known)
    if extra:
        raise BundleError(f"bundle {path.name}: unexpected files not in the manifest: {extra}")
    preprocessing = json.loads((path / PREPROCESSING_FILE).read_bytes())
    return Bundle(path, manifest, preprocessing)


def _check_plain_files(path: Path) -> None:
    """The folder itself and everything in it: no links, no special files, no sub-folders.

    Checked without following links (lstat), before any file is opened."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise BundleError(f"bundle {path}: not a folder") from None
    if not stat.S_ISDIR(mode):
        raise BundleError(f"bundle {path}: not a folder (a symlink or a file)")
    with os.scandir(path) as entries:
        for item in entries:
            info = item.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode):
                raise BundleError(
                    f"bundle {path.name}: {item.name} is not a regular file "
                    "(symlink, folder or special file)"
                )
            if info.st_nlink > 1:
                raise BundleError(
                    f"bundle {path.name}: {item.name} is a hard link ({info.st_nlink} names)"
                )


def bundle_row(bundle: Bundle, store_uri: str) -> dict[str, Any]:
    """The ``edge.bundles`` row of a bundle (the Dagster layer appends these)."""
    manifest = bundle.manifest
    return {
        "bundle_id": bundle.bundle_id,
        "edge_id": manifest["edge_id"],
        "model": manifest["model"]["name"],
        "model_version": manifest["model"]["version"],
        "precision": manifest["model"].get("precision", "fp32"),
        "threshold": bundle.threshold,
        "lineage": json.dumps(manifest.get("lineage", {}), sort_keys=True),
        "store_uri": store_uri,
        "created_at": datetime.fromisoformat(manifest["created_at"].replace("Z", "+00:00")),
    }
