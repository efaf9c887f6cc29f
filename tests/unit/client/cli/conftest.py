from __future__ import annotations

from pathlib import Path

import pytest

from cl_client._joblog import RECORD_ENV
from cl_compute.deployment import Deployment
from pytest_cl._media import MediaCatalogue, load_catalogue
from tests.unit.client.plugins.deployment import shared_deployment


@pytest.fixture(scope="session")
def deployment(request: pytest.FixtureRequest) -> Deployment:
    return shared_deployment(request)


@pytest.fixture(scope="session")
def media() -> MediaCatalogue:
    return load_catalogue()


@pytest.fixture(autouse=True)
def _own_job_record(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The plugin commands note their jobs (``cl-client jobs list --mine``): in the test's folder, not ~/.cache."""
    monkeypatch.setenv(RECORD_ENV, str(tmp_path / "cl-client-jobs.jsonl"))
