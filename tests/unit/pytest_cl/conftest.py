"""Fixtures of the pytest_cl tests: one real deployment for the whole session that most pytester runs use
through ``--cl-server``/``--cl-mqtt`` (the embedded start-up path is exercised in a few tests only)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

import pytest_cl._runtime  # noqa: F401  - imported here so pytester's module snapshot keeps it between runs
from cl_compute.deployment import Deployment
from tests.unit.pytest_cl.cl_test_plugins import extra_plugins

TASKS = ["hash", "sleep", "fail"]
#: environment variables that would change what the inner pytest runs do
ISOLATE = ("CI", "PYTEST_TIMEOUT", "PYTEST_ADDOPTS", "CL_SERVER_URL", "CL_MQTT_URL", "COMPUTE_URL", "MQTT_URL")


@dataclass(frozen=True)
class Target:
    """The session deployment as the inner runs see it."""

    server_url: str
    mqtt_url: str

    @property
    def args(self) -> list[str]:
        return ["--cl-server", self.server_url, "--cl-mqtt", self.mqtt_url]

    def job_count(self) -> int:
        with httpx.Client(base_url=self.server_url, timeout=10) as http:
            return int(http.get("/admin/jobs/storage/size").json()["job_count"])

    def job_exists(self, job_id: str) -> bool:
        with httpx.Client(base_url=self.server_url, timeout=10) as http:
            return http.get(f"/jobs/{job_id}").status_code == 200

    def delete(self, job_id: str) -> None:
        with httpx.Client(base_url=self.server_url, timeout=10) as http:
            http.delete(f"/jobs/{job_id}")


@pytest.fixture(scope="session")
def cl_target() -> Iterator[Target]:
    dep = Deployment(workers=2, tasks=TASKS, extra_plugins=extra_plugins(), worker_shutdown_grace=1.0)
    dep.start()
    try:
        yield Target(dep.server_url, dep.mqtt_url)
    finally:
        dep.stop()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name in ISOLATE or (name.startswith("CL_") and name != "CL_MEDIA_DIR"):
            monkeypatch.delenv(name)


@pytest.fixture(params=["serial", "xdist"])
def mode(request: pytest.FixtureRequest) -> list[str]:
    """Every scenario runs serially and with ``-n 2``."""
    return [] if request.param == "serial" else ["-n", "2"]


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run pytest in-process (xdist workers are subprocesses) without the cache plugin."""
    return pytester.runpytest("-p", "no:cacheprovider", *QUIET, *args)


#: pytest-asyncio warns about this unset option in every inner run
QUIET = ("-o", "asyncio_default_fixture_loop_scope=function")


PLUGIN_FILE = sys.modules[extra_plugins.__module__].__file__
