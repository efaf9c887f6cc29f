from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import cast

import pytest

from cl_client import AsyncComputeClient, ComputeClient
from cl_compute.deployment import Deployment
from pytest_cl._media import MediaCatalogue, load_catalogue
from tests.unit.client.plugins.deployment import shared_deployment


@pytest.fixture(scope="session", params=["fixed", "upstream-2026-01"])
def deployment(request: pytest.FixtureRequest) -> Deployment:
    """The shared deployment, once per behaviour profile: the client must work against upstream's quirks too."""
    return shared_deployment(request, cast(str, request.param))


@pytest.fixture(scope="session")
def media() -> MediaCatalogue:
    return load_catalogue()


@pytest.fixture
def client(deployment: Deployment) -> Iterator[ComputeClient]:
    with ComputeClient(deployment.server_url, mqtt_url=deployment.mqtt_url) as c:
        yield c


@pytest.fixture
async def aclient(deployment: Deployment) -> AsyncIterator[AsyncComputeClient]:
    async with AsyncComputeClient(deployment.server_url, mqtt_url=deployment.mqtt_url) as c:
        yield c
