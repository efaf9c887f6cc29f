"""Fixtures of the cl_compute server tests: one real deployment per (xdist worker) session."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from compute_test_plugins import TEST_PLUGINS
from server_helpers import Recorder, test_plugin_spec

from cl_compute.deployment import Deployment

TIME_LIMIT = 3.0
SESSION_TASKS = [*TEST_PLUGINS, "broken"]


@pytest.fixture(scope="session")
def deployment() -> Iterator[Deployment]:
    dep = Deployment(
        workers=2,
        tasks=SESSION_TASKS,
        extra_plugins=test_plugin_spec(),
        job_time_limit=TIME_LIMIT,
        worker_shutdown_grace=1.0,
    )
    dep.start()
    try:
        yield dep
    finally:
        dep.stop()


@pytest.fixture(scope="session")
def recorder(deployment: Deployment) -> Iterator[Recorder]:
    rec = Recorder(deployment.mqtt_url)
    yield rec
    rec.close()


@pytest.fixture(scope="session")
def http(deployment: Deployment) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=deployment.server_url, timeout=10) as client:
        yield client
