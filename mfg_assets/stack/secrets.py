"""Credentials of the local stack: generated once into data/stack/secrets (0600), never in git.

Each component gets only its own: a broker user per component (one per edge), an S3
identity per component (scoped to its buckets), a PostgreSQL role per database. They are
reused on the next `make stack`, so that state kept under data/stack stays readable.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from mfg_assets.edge.signing import DEV_PRIVATE, DEV_PUBLIC, generate_keypair


def _token(length: int = 24) -> str:
    return secrets.token_urlsafe(length)


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only (replacing any earlier one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


@dataclass
class StackSecrets:
    directory: Path
    broker: dict[str, str] = field(default_factory=dict)  # user -> password
    s3: dict[str, list[str]] = field(default_factory=dict)  # identity -> [access key, secret]
    postgres: dict[str, str] = field(default_factory=dict)  # role -> password

    @property
    def file(self) -> Path:
        return self.directory / "secrets.json"

    @property
    def signing_key(self) -> Path:
        return self.directory / "keys" / DEV_PRIVATE

    @property
    def public_key(self) -> Path:
        return self.directory / "keys" / DEV_PUBLIC

    @classmethod
    def load_or_create(
        cls,
        directory: Path,
        broker_users: list[str],
        s3_identities: list[str],
        pg_roles: list[str],
    ) -> StackSecrets:
        """Read the saved secrets and add whatever is missing (a new edge, a new role)."""
        found = cls(directory)
        if found.file.exists():
            doc = json.loads(found.file.read_text())
            found.broker, found.s3, found.postgres = doc["broker"], doc["s3"], doc["postgres"]
        for user in broker_users:
            found.broker.setdefault(user, _token())
        for name in s3_identities:
            # SeaweedFS wants plain alphanumerics for access keys
            found.s3.setdefault(name, [f"AK{secrets.token_hex(9).upper()}", _token(30)])
        for role in pg_roles:
            found.postgres.setdefault(role, _token())
        found.save()
        if not found.signing_key.exists():
            generate_keypair(found.signing_key.parent)
        return found

    @classmethod
    def load(cls, directory: Path) -> StackSecrets:
        """The saved secrets, creating nothing (FileNotFoundError when there are none)."""
        found = cls(directory)
        doc = json.loads(found.file.read_text())
        found.broker, found.s3, found.postgres = doc["broker"], doc["s3"], doc["postgres"]
        return found

    def save(self) -> None:
        doc = {"broker": self.broker, "s3": self.s3, "postgres": self.postgres}
        write_private(self.file, json.dumps(doc, indent=2, sort_keys=True).encode())
