"""One real ``cl_compute`` deployment per test process, shared by the plugin and CLI tests (started lazily)."""

from __future__ import annotations

import threading

import pytest

from cl_compute.deployment import Deployment

_lock = threading.Lock()
_deployment: Deployment | None = None


def shared_deployment(request: pytest.FixtureRequest) -> Deployment:
    """Start the deployment on first use; it stops when the pytest session ends."""
    global _deployment
    with _lock:
        if _deployment is None:
            dep = Deployment(workers=2, job_time_limit=60.0)
            dep.start()
            _deployment = dep

            def stop() -> None:
                global _deployment
                dep.stop()
                _deployment = None

            request.config.add_cleanup(stop)
        return _deployment
