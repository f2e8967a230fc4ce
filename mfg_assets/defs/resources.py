"""Module-level resources: where the lakehouse is and which UNS contract applies.

Defaults come from :class:`mfg_assets.settings.Settings` (environment variables, embedded
defaults under ``data/``), so production is configuration: ``MFG_LAKE_URI=s3://...``.
"""

from __future__ import annotations

from functools import cached_property

import dagster as dg

from mfg_assets.lake.delta import Lake
from mfg_assets.settings import get_settings
from mfg_assets.uns.contract import Contract, load_contract


class LakehouseResource(dg.ConfigurableResource):
    """The Delta lakehouse root (folder or ``s3://`` URI) and its object-store options."""

    root: str
    storage_options: dict[str, str] = {}

    def lake(self) -> Lake:
        return Lake(self.root, dict(self.storage_options))


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


def default_resources() -> dict[str, dg.ConfigurableResource]:
    settings = get_settings()
    return {
        "lakehouse": LakehouseResource(
            root=settings.lake_uri, storage_options=settings.storage_options
        ),
        "uns": UnsResource(
            contract_path=str(settings.contract_path),
            replay_dir=str(settings.replay_dir),
            enterprise=settings.enterprise,
        ),
    }
