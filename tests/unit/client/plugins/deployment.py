"""One real ``cl_compute`` deployment per test process, shared by the plugin and CLI tests (started lazily).

The plugin tests run against both behaviour profiles (``fixed`` and ``upstream-2026-01``); one deployment runs at
a time: asking for the other profile stops the current one first (pytest groups the tests by profile).
"""

from __future__ import annotations

import threading

import pytest

from cl_compute.deployment import Deployment

_lock = threading.Lock()
_deployment: Deployment | None = None
_cleanup_registered = False


def _stop() -> None:
    global _deployment
    if _deployment is not None:
        _deployment.stop()
        _deployment = None


def shared_deployment(request: pytest.FixtureRequest, profile: str = "fixed") -> Deployment:
    """Start the deployment of ``profile`` on first use; it stops when the pytest session ends."""
    global _deployment, _cleanup_registered
    with _lock:
        if _deployment is not None and _deployment.profile != profile:
            _stop()
        if _deployment is None:
            dep = Deployment(workers=2, job_time_limit=60.0, profile=profile)
            dep.start()
            _deployment = dep
            if not _cleanup_registered:
                _cleanup_registered = True
                request.config.add_cleanup(_stop)
        return _deployment
