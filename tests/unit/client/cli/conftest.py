from __future__ import annotations

import pytest

from cl_compute.deployment import Deployment
from pytest_cl._media import MediaCatalogue, load_catalogue
from tests.unit.client.plugins.deployment import shared_deployment


@pytest.fixture(scope="session")
def deployment(request: pytest.FixtureRequest) -> Deployment:
    return shared_deployment(request)


@pytest.fixture(scope="session")
def media() -> MediaCatalogue:
    return load_catalogue()
