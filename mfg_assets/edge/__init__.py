"""The edge room: model export, signed per-edge bundles and the edge runtime.

    export.py    torch nn.Module -> ONNX (fp32), parity check, int8 quantization with a gate
    signing.py   Ed25519 keys (settings/env, dev keypair under data/keys/), sign/verify
    bundle.py    build one bundle per edge (model, preprocessing, threshold, signed manifest)
    store.py     bundle store (local folder or s3:// by configuration), assignments, devices
    windows.py   rolling sensor windows and their features (the training side's definitions)
    predictor.py an onnxruntime session + preprocessing spec: image / window -> prediction
    runtime.py   the edge service: MQTT in, predictions + telemetry out, hot swap, fallback

Stream plane: nothing here imports Dagster.
"""
