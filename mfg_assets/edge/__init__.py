"""The edge room: what runs ON the device. Verify, load, infer, publish.

Needs only onnxruntime, paho-mqtt, cryptography, numpy, orjson, pillow and psutil
(``pip install 'mfg_assets[edge]'``): never torch, Dagster, polars or pyarrow. Build-time
code (export, quantization, per-edge bundle building, rollouts) lives in ``fleet/``.

    cli.py       `mfg-edge run | verify | keygen | register | assign` (also `mfg edge ...`)
    signing.py   Ed25519 keys (settings/env, dev keypair under data/keys/), sign/verify
    bundle.py    build and verify one bundle (model, preprocessing, threshold, signed manifest)
    store.py     bundle store (local folder or s3:// by configuration), assignments, devices
    storefs.py   the store's file operations: stdlib for a folder, pyarrow.fs only for s3://
    cache.py     the edge's bundle cache: ids are names, every path checked to stay inside
    windows.py   rolling sensor windows and their features (the training side's definitions)
    predictor.py an onnxruntime session + preprocessing spec: image / window -> prediction
    runtime.py   the edge service: MQTT in, predictions + telemetry out, hot swap, fallback

Stream plane: nothing here imports Dagster, torch or fleet/.
"""
