"""Private ``cl_compute`` deployments for the checks that stop, kill or hold workers (embedded runs only).

The shared embedded deployment serves every check of the run (also under xdist), so a check that kills a worker
or holds one for seconds would disturb the others. These checks start a small deployment of their own instead,
with the run's ``--cl-embedded-profile`` (so a planted fault or an upstream profile applies here too), one worker
by default, the plugins ``hash`` and ``cl_conformance_slow`` (``_slow_plugin.py``), and worker supervision off
(a killed worker stays dead, so what the deployment says about it can be watched).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx
import pytest

from pytest_cl.config import resolve_settings
from pytest_cl.conformance.protocol._slow_plugin_name import SLOW_SPEC, SLOW_TASK

if TYPE_CHECKING:
    from cl_compute.deployment import Deployment


@contextmanager
def private_deployment(
    config: pytest.Config, *, workers: int = 1, keepalive: int | None = None, heartbeat: float = 10.0
) -> Iterator[Deployment]:
    """Start a private deployment (see the module documentation) and stop it afterwards.

    Skips the test when ``cl_compute`` cannot be imported (the server extra is not installed).

    Args:
        config: the pytest config (for ``--cl-embedded-profile``).
        workers: number of workers.
        keepalive: the MQTT keep-alive of its processes in seconds (None: cl_compute's default, 30).
        heartbeat: the workers' heartbeat interval in seconds (their job lease is 3 times it).
    """
    module = pytest.importorskip(
        "cl_compute.deployment",
        reason="this check starts a private cl_compute deployment, and cl_compute cannot be imported here "
        '(pip install "cl-client[server]")',
    )
    settings = resolve_settings(config)
    dep: Deployment = module.Deployment(
        workers=workers,
        tasks=["hash", SLOW_TASK],
        extra_plugins={SLOW_TASK: SLOW_SPEC},
        worker_shutdown_grace=1.0,
        restart_workers=False,
        profile=settings.embedded_profile,
        heartbeat_interval=heartbeat,
        env={} if keepalive is None else {"CL_COMPUTE_MQTT_KEEPALIVE": str(keepalive)},
    )
    dep.start()
    try:
        yield dep
    finally:
        dep.stop()


def wait_status(server_url: str, job_id: str, wanted: set[str], timeout: float) -> dict[str, object]:
    """Poll ``GET /jobs/{id}`` until its status is one of ``wanted``; return the record (the last one on timeout)."""
    deadline = time.monotonic() + timeout
    record: dict[str, object] = {}
    while True:
        response = httpx.get(f"{server_url}/jobs/{job_id}", timeout=10)
        if response.status_code == 200:
            record = response.json()
            if record.get("status") in wanted:
                return record
        if time.monotonic() > deadline:
            return record
        time.sleep(0.1)
