"""Signed bundles: a good one verifies; unsigned, tampered or incomplete ones are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mfg_assets.edge import signing
from mfg_assets.edge.bundle import BundleError, calibrate_threshold, verify_bundle
from mfg_assets.edge.store import BundleStore


def test_a_built_bundle_verifies_and_records_lineage(make_vision_bundle, keys):
    bundle = verify_bundle(make_vision_bundle().path, keys[1])
    manifest = bundle.manifest
    assert manifest["edge_id"] == "edge-cam01"
    assert manifest["model"] == {"name": "vision_defect", "version": "1", "precision": "fp32",
                                 "reason": "test"}
    assert manifest["lineage"]["delta_versions"] == {"features.image_dataset": 3}
    assert set(manifest["files"]) == {"model.onnx", "preprocessing.json"}
    assert manifest["input"]["kind"] == "image"
    assert bundle.bundle_id.startswith("vision_defect-v1-edge-cam01-")
    assert bundle.preprocessing["classes"] == ["dent", "missing_part", "ok", "scratch"]


def test_bundle_id_changes_with_content(make_vision_bundle):
    a = make_vision_bundle(threshold=0.4)
    b = make_vision_bundle(threshold=0.6)
    c = make_vision_bundle(edge_id="edge-cam02", threshold=0.4)
    assert len({a.bundle_id, b.bundle_id, c.bundle_id}) == 3


def test_changed_byte_in_the_model_is_a_checksum_mismatch(make_vision_bundle, keys):
    path = make_vision_bundle().path
    data = bytearray((path / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (path / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum mismatch of file model.onnx"):
        verify_bundle(path, keys[1])


def test_changed_manifest_is_a_bad_signature(make_vision_bundle, keys):
    path = make_vision_bundle().path
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["threshold"]["value"] = 0.99  # quietly loosen the alarm threshold
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    with pytest.raises(BundleError, match="bad signature"):
        verify_bundle(path, keys[1])


def test_missing_signature_is_unsigned(make_vision_bundle, keys):
    path = make_vision_bundle().path
    (path / "manifest.sig").unlink()
    with pytest.raises(BundleError, match="unsigned"):
        verify_bundle(path, keys[1])


def test_missing_file_and_unexpected_file_are_named(make_vision_bundle, keys):
    path = make_vision_bundle().path
    (path / "preprocessing.json").unlink()
    with pytest.raises(BundleError, match="missing file preprocessing.json"):
        verify_bundle(path, keys[1])
    other = make_vision_bundle(threshold=0.3).path
    (other / "extra.onnx").write_bytes(b"smuggled")
    with pytest.raises(BundleError, match="unexpected files"):
        verify_bundle(other, keys[1])


def test_a_bundle_signed_by_another_key_is_refused(make_vision_bundle, tmp_path):
    _, other_public = signing.generate_keypair(tmp_path / "other")
    with pytest.raises(BundleError, match="bad signature"):
        verify_bundle(make_vision_bundle().path, signing.load_public_key(other_public))


def test_dev_keys_are_made_once_under_the_data_dir(data_dir):
    first = signing.load_public_key()
    assert (data_dir / "keys" / signing.DEV_PRIVATE).stat().st_mode & 0o077 == 0
    assert signing.public_pem(signing.load_public_key()) == signing.public_pem(first)
    with pytest.raises(FileExistsError):
        signing.generate_keypair(data_dir / "keys")


def test_calibrate_threshold_is_a_quantile_of_finite_scores():
    scores = np.concatenate([np.arange(100, dtype=float), [np.nan, np.inf]])
    assert calibrate_threshold(scores, 0.9) == pytest.approx(89.1)
    with pytest.raises(ValueError, match="at least 10"):
        calibrate_threshold([1.0, 2.0], 0.9)
    with pytest.raises(ValueError, match="quantile"):
        calibrate_threshold(scores, 1.0)


def test_store_round_trip_and_assignment(make_vision_bundle, keys, tmp_path):
    store = BundleStore(f"file://{tmp_path / 'store'}")
    bundle = make_vision_bundle()
    assert store.publish(bundle.path) == bundle.bundle_id
    assert store.bundles() == [bundle.bundle_id]
    assert store.assignment("edge-cam01") is None
    store.assign("edge-cam01", bundle.bundle_id, reason="first deploy")
    assert store.assignment("edge-cam01").bundle_id == bundle.bundle_id
    fetched = store.fetch(bundle.bundle_id, tmp_path / "cache")
    assert verify_bundle(fetched, keys[1]).bundle_id == bundle.bundle_id
    with pytest.raises(FileNotFoundError):
        store.assign("edge-cam01", "no-such-bundle")
