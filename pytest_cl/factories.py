"""Fixture factories: more clients with their own settings (another token, a shorter job timeout, ...).

Example (``conftest.py``)::

    from pytest_cl import factories

    admin_client = factories.compute_client(token=os.environ.get("ADMIN_TOKEN"))
    quick_client = factories.compute_client(job_timeout=10)

A factory argument beats the command line, the environment and the ini (see ``pytest_cl.config``). The
clients are function-scoped, use the same deployment as ``compute_client``, and their jobs are recorded,
checked and deleted like those of ``compute_client``.

This module imports only pytest and the standard library.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from pytest_cl.config import resolve_settings

if TYPE_CHECKING:
    from cl_client import ComputeClient
    from pytest_cl._runtime import Runtime

__all__ = ["compute_client"]


def compute_client(
    *,
    token: str | None = None,
    auth_url: str | None = None,
    username: str | None = None,
    password: str | None = None,
    job_timeout: float | None = None,
    polling_only: bool = False,
):
    """Return a function-scoped fixture giving a ``ComputeClient`` with these settings.

    Args:
        token: bearer token (instead of ``--cl-token``).
        auth_url: auth service URL.
        username: login user name.
        password: login password.
        job_timeout: longest job wait in seconds (still shorter than the test's timeout).
        polling_only: connect no MQTT broker: the client waits on jobs by polling (as against a deployment
            whose broker is unreachable); its jobs are still recorded, checked and cleaned up.
    """

    @pytest.fixture
    def factory_client(
        request: pytest.FixtureRequest, _cl_runtime: Runtime, _cl_test: float
    ) -> Iterator[ComputeClient]:
        settings = resolve_settings(
            request.config,
            token=token,
            auth_url=auth_url,
            username=username,
            password=password,
            job_timeout=job_timeout,
        )
        client = _cl_runtime.new_client(settings, polling_only=polling_only)
        try:
            yield client
        finally:
            client.close()

    return factory_client
