"""The ``async_compute_client`` fixture, registered by ``pytest_cl.plugin`` when pytest-asyncio is installed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from cl_client import AsyncComputeClient
from pytest_cl._runtime import Runtime


@pytest_asyncio.fixture
async def async_compute_client(_cl_runtime: Runtime, _cl_test: float) -> AsyncIterator[AsyncComputeClient]:
    """A connected ``AsyncComputeClient`` (one per test, on the test's event loop).

    Its jobs are recorded, checked and deleted at teardown exactly like those of ``compute_client``.
    """
    client = _cl_runtime.new_async_client()
    try:
        yield client
    finally:
        await client.aclose()
