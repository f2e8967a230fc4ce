"""Ed25519 keys for bundle manifests.

Where the keys come from (configuration, never code):

- ``MFG_EDGE_SIGNING_KEY``: path of the PEM private key (only the builder needs it);
- ``MFG_EDGE_PUBLIC_KEY``: path of the PEM public key, or the PEM text itself (edges);
- neither set: a development keypair under ``<data dir>/keys/`` (``data/`` is ignored by
  git), generated on first use. A production fleet sets both variables.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mfg_assets.settings import get_settings

PRIVATE_ENV = "MFG_EDGE_SIGNING_KEY"
PUBLIC_ENV = "MFG_EDGE_PUBLIC_KEY"
DEV_PRIVATE = "edge_signing_key.pem"
DEV_PUBLIC = "edge_signing_key.pub.pem"


def generate_keypair(directory: Path) -> tuple[Path, Path]:
    """Write a new keypair (private key readable by the owner only); return both paths.

    Refuses to replace an existing key: every bundle signed with it would stop verifying.
    """
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / DEV_PRIVATE, directory / DEV_PUBLIC
    if private.exists():
        raise FileExistsError(f"{private} exists; move it away first to make a new keypair")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public.write_bytes(public_pem(key.public_key()))
    return private, public


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def dev_key_dir() -> Path:
    return get_settings().data_dir / "keys"


def _ensure_dev_keys() -> tuple[Path, Path]:
    directory = dev_key_dir()
    private, public = directory / DEV_PRIVATE, directory / DEV_PUBLIC
    if not private.exists():
        return generate_keypair(directory)
    return private, public


def load_private_key(path: Path | str | None = None) -> Ed25519PrivateKey:
    """The signing key: ``path``, else ``MFG_EDGE_SIGNING_KEY``, else the dev keypair."""
    source = path or get_settings().edge.signing_key or _ensure_dev_keys()[0]
    key = serialization.load_pem_private_key(Path(source).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{source}: not an Ed25519 private key")
    return key


def load_public_key(source: Path | str | bytes | None = None) -> Ed25519PublicKey:
    """The verifying key: a path or PEM text, else ``MFG_EDGE_PUBLIC_KEY``, else the dev key."""
    source = source or get_settings().edge.public_key or _ensure_dev_keys()[1]
    if isinstance(source, bytes):
        pem = source
    elif isinstance(source, str) and source.lstrip().startswith("-----BEGIN"):
        pem = source.encode()
    else:
        pem = Path(source).read_bytes()
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def sign(data: bytes, key: Ed25519PrivateKey) -> bytes:
    return key.sign(data)


def verify(data: bytes, signature: bytes, key: Ed25519PublicKey) -> bool:
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True
