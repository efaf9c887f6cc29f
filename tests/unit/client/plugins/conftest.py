from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from cl_client import AsyncComputeClient, ComputeClient
from cl_compute.deployment import Deployment
from pytest_cl._media import MediaCatalogue, load_catalogue
from tests.unit.client.plugins.deployment import shared_deployment


@pytest.fixture(scope="session")
def deployment(request: pytest.FixtureRequest) -> Deployment:
    return shared_deployment(request)


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
