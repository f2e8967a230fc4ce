"""`mfg edge ...`: register from the simulator layout, assign, verify."""

from __future__ import annotations

from mfg_assets.cli import main
from mfg_assets.edge.store import BundleStore


def test_register_assign_verify(make_vision_bundle, keys, tmp_path, capsys, monkeypatch):
    store_uri = str(tmp_path / "store")
    assert main(["edge", "register", "--edge-id", "edge-cam02", "--bundle-store", store_uri]) == 0
    device = BundleStore(store_uri).device("edge-cam02")
    assert device.kind == "camera"
    assert device.sources == ("acme/detroit/assembly/final1/inspect02/cam-02/inspection",)
    place = "acme/detroit/assembly/final1/inspect02"
    assert device.topic("predictions") == f"{place}/edge-cam02/predictions"

    bundle = make_vision_bundle(edge_id="edge-cam02")
    BundleStore(store_uri).publish(bundle.path)
    args = ["edge", "assign", "--edge-id", "edge-cam02", "--bundle-store", store_uri]
    assert main([*args, "--bundle-id", bundle.bundle_id]) == 0
    assert main([*args, "--bundle-id", "nope"]) == 2

    public = tmp_path / "keys" / "edge_signing_key.pub.pem"
    assert main(["edge", "verify", str(bundle.path), "--public-key", str(public)]) == 0
    (bundle.path / "manifest.sig").unlink()
    assert main(["edge", "verify", str(bundle.path), "--public-key", str(public)]) == 1
    assert "REFUSED" in capsys.readouterr().err
