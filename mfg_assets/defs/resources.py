"""Module-level resources: where the lakehouse is and which UNS contract applies.

Defaults come from :class:`mfg_assets.settings.Settings` (environment variables, embedded
defaults under ``data/``), so production is configuration: ``MFG_LAKE_URI=s3://...``.

Secrets are bound as ``dg.EnvVar``: the Dagster UI (and the repository snapshot) show the
variable's name, and the value is read when a run initialises the resource. An EnvVar that
is unset at that moment fails the run, so one is bound only for a variable that is set when
the definitions are built; the embedded default binds none.
"""

from __future__ import annotations

from functools import cached_property

import dagster as dg

from mfg_assets.lake.delta import Lake
from mfg_assets.settings import AWS_OPTIONS, AWS_SECRETS, Settings, get_settings
from mfg_assets.uns.contract import Contract, load_contract


class LakehouseResource(dg.ConfigurableResource):
    """The Delta lakehouse root (folder or ``s3://`` URI) and its object-store options;
    the S3 credentials come as environment variables (shown by name in the UI)."""

    root: str
    storage_options: dict[str, str] = {}  # not secret: region, endpoint, allow_http
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None

    def lake(self) -> Lake:
        secrets = {
            "aws_access_key_id": self.aws_access_key_id,
            "aws_secret_access_key": self.aws_secret_access_key,
            "aws_session_token": self.aws_session_token,
        }
        options = dict(self.storage_options) | {k: v for k, v in secrets.items() if v}
        return Lake(self.root, options)


class UnsResource(dg.ConfigurableResource):
    """The plant's AsyncAPI contract and where replay files land."""

    contract_path: str
    replay_dir: str
    enterprise: str = "acme"

    @cached_property
    def _contract(self) -> Contract:
        return load_contract(self.contract_path)

    def contract(self) -> Contract:
        return self._contract


def lakehouse_resource(settings: Settings) -> LakehouseResource:
    """The lakehouse as settings say, every AWS secret that is set bound as an EnvVar."""
    secret_keys = {AWS_OPTIONS[name] for name in AWS_SECRETS}
    plain = {k: v for k, v in settings.storage_options.items() if k not in secret_keys}
    secrets = {
        AWS_OPTIONS[name]: dg.EnvVar(name)
        for name in AWS_SECRETS
        if AWS_OPTIONS[name] in settings.storage_options
    }
    return LakehouseResource(root=settings.lake_uri, storage_options=plain, **secrets)


def default_resources() -> dict[str, dg.ConfigurableResource]:
    settings = get_settings()
    return {
        "lakehouse": lakehouse_resource(settings),
        "uns": UnsResource(
            contract_path=str(settings.contract_path),
            replay_dir=str(settings.replay_dir),
            enterprise=settings.enterprise,
        ),
    }
