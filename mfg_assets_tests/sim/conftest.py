"""Simulator test fixtures: small runs generated once, and a real mosquitto broker.

The mosquitto fixture is meant to move to the top-level conftest once other rooms
(gateway, edge runtime) need a broker too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mfg_assets.sim import SimConfig, SimMessage, iter_messages
from mfg_assets_tests.brokers import Mosquitto, mosquitto_binary


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private mosquitto on a free localhost port; yields its ``mqtt://`` URL."""
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto); broker tests skipped")
    server = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    yield server.url
    server.stop()


# A short run with every source, drift off: shared by the read-only tests.
SMALL = SimConfig(seed=11, duration_h=2.0, sensor_period_s=10.0, image_period_s=30.0)


@pytest.fixture(scope="session")
def small_config() -> SimConfig:
    return SMALL


@pytest.fixture(scope="session")
def small_messages() -> list[SimMessage]:
    return list(iter_messages(SMALL))
