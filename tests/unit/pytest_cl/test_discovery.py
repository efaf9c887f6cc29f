"""``--cl-server`` without ``--cl-mqtt``: broker discovery.

Discovery tries port 1883 (after 8883 for an https server) on the server's host. The inner runs point
``pytest_cl.deployment.DISCOVERY_PORTS`` at brokers of their own (the session deployment's, a bare broker, another
deployment's, or a port where nothing listens) so that nothing here depends on what runs on this machine's 1883.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

import pytest_cl.deployment
from cl_compute.broker import start_broker
from cl_compute.deployment import Deployment
from pytest_cl.deployment import broker_candidates
from tests.unit.ports import unassigned_port
from tests.unit.pytest_cl.cl_test_plugins import extra_plugins
from tests.unit.pytest_cl.conftest import TASKS, Target, run

USES_THE_BROKER = """
def test_fixtures_use_the_discovered_broker(cl_deployment, compute_client, tmp_path):
    assert cl_deployment.mqtt_discovered
    assert compute_client.monitor is not None
    assert compute_client.monitor.settings.url == cl_deployment.mqtt_url
    assert compute_client.monitor.wait_ready(5)
    f = tmp_path / "a.txt"
    f.write_bytes(b"hello")
    assert compute_client.submit("hash", f, {"algorithm": "md5"}).result().status == "completed"
"""

NO_TEST_RUNS = """
def test_a(compute_client):
    pass

def test_b(cl_deployment):
    pass
"""


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def _discover_on(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    """Make discovery try ``mqtt://<host>:port`` instead of 1883 (the inner runs share this process)."""
    monkeypatch.setitem(pytest_cl.deployment.DISCOVERY_PORTS, "mqtt", port)


def test_the_default_candidates_are_8883_over_tls_then_1883() -> None:
    assert broker_candidates("http://compute.example:8002") == ["mqtt://compute.example:1883"]
    assert broker_candidates("https://compute.example") == [
        "mqtts://compute.example:8883",
        "mqtt://compute.example:1883",
    ]
    assert broker_candidates("http://[::1]:8002/") == ["mqtt://[::1]:1883"]


def test_discovery_finds_the_deployments_broker(
    pytester: pytest.Pytester, cl_target: Target, mode: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``--cl-mqtt`` the broker is discovered, named in the header, and used by every fixture client
    (also in xdist workers) and by the lifecycle checks (events seen)."""
    _discover_on(monkeypatch, _port(cl_target.mqtt_url))
    pytester.makepyfile(test_discovered=USES_THE_BROKER)
    result = run(pytester, "--cl-server", cl_target.server_url, *mode, "--cl-report", "report.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [f"cl: deployment under test: cl_compute * at {cl_target.server_url} (mqtt {cl_target.mqtt_url} (discovered);*"]
    )
    report = json.loads((pytester.path / "report.json").read_text())
    assert f"(mqtt {cl_target.mqtt_url} (discovered);" in report["deployment"]


def test_no_broker_is_one_clear_error(
    pytester: pytest.Pytester, cl_target: Target, mode: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing answers: the run stops before any test with one message naming what was tried and the options."""
    port = unassigned_port()
    _discover_on(monkeypatch, port)
    pytester.makepyfile(NO_TEST_RUNS)
    result = run(pytester, "--cl-server", cl_target.server_url, *mode)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: cl: no MQTT broker of the deployment at {cl_target.server_url} was found (no --cl-mqtt given): "
            f"tried mqtt://127.0.0.1:{port} (connection refused). Pass the deployment's broker with --cl-mqtt URL "
            "(ini cl_mqtt, env CL_MQTT_URL), or --cl-mqtt off to certify by polling only (the checks that need "
            "MQTT are then reported as not checked)."
        ]
    )
    assert result.stderr.str().count("ERROR") == 1
    out = result.stdout.str() + result.stderr.str()
    assert "plugin.py" not in out and "Traceback" not in out
    assert "passed" not in out and "failed" not in out


def test_a_bare_broker_is_not_taken_for_the_deployments(
    pytester: pytest.Pytester, cl_target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker answers on the port but carries no capability message of the deployment's workers."""
    broker = start_broker()
    try:
        _discover_on(monkeypatch, _port(broker.url))
        pytester.makepyfile(NO_TEST_RUNS)
        result = run(pytester, "--cl-server", cl_target.server_url)
    finally:
        broker.stop()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: cl: no MQTT broker of the deployment at {cl_target.server_url} was found (no --cl-mqtt given): "
            f"tried {broker.url} (it answers, but its retained capability messages name 0 worker(s) offering "
            "nothing, while GET /capabilities reports 2 worker(s) offering fail, hash, sleep: it does not carry "
            "this deployment's traffic). Pass the deployment's broker with --cl-mqtt URL*--cl-mqtt off*"
        ]
    )


def test_another_deployments_broker_is_not_taken_for_the_deployments(
    pytester: pytest.Pytester, cl_target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another deployment with the same workers on the same host: its capability messages look right, but the
    probe job's events are not there."""
    other = Deployment(workers=2, tasks=TASKS, extra_plugins=extra_plugins(), worker_shutdown_grace=1.0)
    other.start()
    try:
        _discover_on(monkeypatch, _port(other.mqtt_url))
        pytester.makepyfile(NO_TEST_RUNS)
        before = cl_target.job_count()
        result = run(pytester, "--cl-server", cl_target.server_url)
    finally:
        other.stop()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            f"ERROR: cl: no MQTT broker of the deployment at {cl_target.server_url} was found *: tried "
            f"{other.mqtt_url} (it carries capability messages like this deployment's, but no event of the probe "
            "job * (hash) arrived within 3 s: it is another deployment's broker). Pass *--cl-mqtt URL*"
        ]
    )
    assert cl_target.job_count() == before  # the probe job was deleted


def test_an_upstream_deployment_whose_first_capabilities_answer_is_empty_is_described_fully() -> None:
    """Upstream's ``/capabilities`` answers ``{}`` once after its start (PROTOCOL.md §2); with no broker to fill the
    gap, the plugin must ask again rather than report every plugin as not offered."""
    from pytest_cl.config import Settings
    from pytest_cl.deployment import describe

    with Deployment(workers=1, tasks=["hash"], profile="upstream-2026-01") as dep:
        info = describe(Settings(server=dep.server_url, mqtt="off"), dep.server_url, None, mode="remote")
    assert info.service == "Task Server"
    assert not info.is_reference
    assert info.capabilities == ("hash",), f"capabilities after the lazy first answer: {info.capabilities}"
