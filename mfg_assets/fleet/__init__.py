"""The fleet room: the platform's side of the edges (no Dagster, never imported by edge/).

    export.py    torch nn.Module -> ONNX (fp32), parity check, int8 quantization with a gate
    bundles.py   which edges exist and what they serve, one signed bundle per edge
    rollout.py   rollout policy: canary choice, canary vs control comparison, state machine
    deploy.py    deployment steps: newest bundles, evidence, start / advance / approve
"""
