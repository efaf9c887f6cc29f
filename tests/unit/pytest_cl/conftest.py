"""Fixtures of the pytest_cl tests: one real deployment for the whole session that most pytester runs use
through ``--cl-server``/``--cl-mqtt`` (the embedded start-up path is exercised in a few tests only)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass

import httpcore  # noqa: F401  - httpx imports it lazily; a copy first imported by an inner run would be dropped
import httpx
import pytest

import pytest_cl._runtime  # noqa: F401  - imported here so pytester's module snapshot keeps it between runs
from cl_compute.deployment import Deployment
from tests.unit.pytest_cl.cl_test_plugins import extra_plugins

# Modules first imported inside an in-process inner run are removed from sys.modules after it (pytester's
# snapshot); httpx caches httpcore's exception classes, so load the transports here once.
httpx.HTTPTransport().close()
httpx.AsyncHTTPTransport()

TASKS = ["hash", "sleep", "fail"]
#: environment variables that would change what the inner pytest runs do
ISOLATE = (
    "CI", "PYTEST_TIMEOUT", "PYTEST_ADDOPTS", "CL_SERVER_URL", "CL_MQTT_URL", "COMPUTE_URL", "MQTT_URL",
    "XDG_CACHE_HOME",  # the per-user ledger then lands in the pytester directory (pytester sets HOME)
)  # fmt: skip


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


def run(pytester: pytest.Pytester, *args: str, interrupted: bool = False) -> pytest.RunResult:
    """Run pytest in-process (xdist workers are subprocesses) without the cache plugin.

    ``interrupted``: the inner run ends with a KeyboardInterrupt (do not re-raise it here).
    """
    if interrupted:
        return pytester.runpytest("-p", "no:cacheprovider", *QUIET, *args, no_reraise_ctrlc=True)
    return pytester.runpytest("-p", "no:cacheprovider", *QUIET, *args)


#: pytest-asyncio warns about this unset option in every inner run
QUIET = ("-o", "asyncio_default_fixture_loop_scope=function")


PLUGIN_FILE = sys.modules[extra_plugins.__module__].__file__


def _measure_module_level_code() -> None:
    """pytest imports entry-point plugins before pytest-cov starts measuring, so the module-level statements
    of the plugin's light modules would never be counted. Execute them again, in place, now that coverage
    runs (the stash keys live in ``pytest_cl._keys``, which is not re-executed, so running sessions keep
    their state)."""
    import importlib

    import pytest_cl._tmp
    import pytest_cl.config
    import pytest_cl.deployment
    import pytest_cl.plugin
    import pytest_cl.report

    for module in (pytest_cl._tmp, pytest_cl.config, pytest_cl.deployment, pytest_cl.report, pytest_cl.plugin):
        importlib.reload(module)


_measure_module_level_code()
