"""``--cl-mqtt off``: checks that need MQTT are "not checked" (their own outcome), never failures."""

from __future__ import annotations

import json

import pytest

from tests.unit.pytest_cl.conftest import Target, run

OFF_SUITE = """
import json
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion


@pytest.fixture(params=[pytest.param("mqtt", marks=pytest.mark.cl_needs_mqtt), "polling"])
def variant(request):
    return request.param


@pytest.mark.cl_needs_mqtt
def test_events(compute_client):
    raise AssertionError("a cl_needs_mqtt check ran without MQTT")


def test_both_paths(compute_client, variant, tmp_path):
    assert variant == "polling", "the mqtt variant is not checked with --cl-mqtt off"
    f = tmp_path / "a.txt"
    f.write_bytes(b"x")
    assert compute_client.submit("hash", f).result().status == "completed"


def test_no_lifecycle_check_without_mqtt(compute_client, tmp_path):
    # an event after the terminal one would fail the lifecycle check: without MQTT it is not checked
    f = tmp_path / "a.txt"
    f.write_bytes(b"y")
    job = compute_client.submit("hash", f)
    job.result()
    host, port = {mqtt_url!r}.rsplit("/", 1)[1].split(":")
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    c.connect(host, int(port))
    c.loop_start()
    payload = {{"job_id": job.job_id, "event_type": "processing", "timestamp": time.time() * 1000 + 1000}}
    c.publish("inference/events", json.dumps(payload), qos=1).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()
"""


def test_mqtt_off_reports_not_checked(pytester: pytest.Pytester, cl_target: Target, mode: list[str]) -> None:
    """``--cl-mqtt off``: checks marked ``cl_needs_mqtt`` (also through a fixture parameter) are skipped as
    "not checked", counted in their own column of the matrix and listed; nothing fails, no lifecycle check runs."""
    pytester.makepyfile(
        **{
            "clsuite/__init__": "",
            "clsuite/plugins/__init__": "",
            "clsuite/plugins/test_hash": OFF_SUITE.format(mqtt_url=cl_target.mqtt_url),
        }
    )
    result = run(pytester, "--cl-server", cl_target.server_url, "--cl-mqtt", "off", *mode, "--cl-report", "r.json")
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines(
        [
            "cl: MQTT off (--cl-mqtt off): jobs are watched by polling; checks that need MQTT (cl_needs_mqtt) and "
            "the REST-vs-MQTT lifecycle checks are not checked",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*cl: not checked (2)*",
            "clsuite/plugins/test_hash.py::test_both_paths[[]mqtt[]]: needs the deployment's MQTT broker, and this "
            "run has none (--cl-mqtt off)",
            "clsuite/plugins/test_hash.py::test_events: needs the deployment's MQTT broker*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "| row | passed | failed | skipped | not checked | jobs | p50 ms | p95 ms |",
            "| --- |*",
            "| hash | 2 | 0 | 0 | 2 | 2 | * | * |",
        ]
    )
    report = json.loads((pytester.path / "r.json").read_text())
    (row,) = report["matrix"]
    assert (row["passed"], row["failed"], row["skipped"], row["not_checked"]) == (2, 0, 0, 2)
    assert report["tests"]["clsuite/plugins/test_hash.py::test_events"]["outcome"] == "not checked"
    assert [n["test"] for n in report["not_checked"]] == [
        "clsuite/plugins/test_hash.py::test_both_paths[mqtt]",
        "clsuite/plugins/test_hash.py::test_events",
    ]
    markdown = (pytester.path / "r.md").read_text()
    assert "| hash | 2 | 0 | 0 | 2 | 2 |" in markdown and "## Not checked" in markdown


def test_needs_mqtt_checks_run_when_mqtt_is_on(pytester: pytest.Pytester, cl_target: Target) -> None:
    """The marker changes nothing when the run has a broker: the check runs (and here fails)."""
    pytester.makepyfile(
        "import pytest\n\n@pytest.mark.cl_needs_mqtt\ndef test_events(compute_client):\n    assert False\n"
    )
    run(pytester, *cl_target.args, "--strict-markers").assert_outcomes(failed=1)
