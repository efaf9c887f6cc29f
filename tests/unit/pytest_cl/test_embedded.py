"""The embedded deployment (no ``--cl-server``): started once per run — also under ``-n 2`` — and stopped.

These are the only tests that start deployments through the plugin (start-up takes about 1.5 s).
"""

from __future__ import annotations

import re

import httpx
import pytest

from tests.unit.pytest_cl.conftest import PLUGIN_FILE, run

SUITE = """
import pytest

def test_mode(cl_deployment):
    assert cl_deployment.mode == "embedded" and cl_deployment.embedded and cl_deployment.is_reference
    assert cl_deployment.capabilities == ("hash", "sleep")

@pytest.mark.parametrize("n", range(3))
def test_hash(compute_client, tmp_path, n):
    f = tmp_path / "a.txt"
    f.write_text(str(n))
    assert compute_client.submit("hash", f, {"algorithm": "md5"}).result().status == "completed"

def test_left_running(compute_client, tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("x")
    compute_client.submit("sleep", f, {"seconds": 20, "steps": 200})

@pytest.mark.cl_requires("face_detection")
def test_missing(compute_client):
    pass

@pytest.mark.cl_destructive
def test_destructive_runs_on_embedded(compute_client):
    pass
"""


@pytest.mark.parametrize("early", [False, True], ids=["first-use", "early"])
def test_embedded_deployment_end_to_end(pytester: pytest.Pytester, mode: list[str], early: bool) -> None:
    """Serially and under xdist; with ``--cl-embedded-early`` the xdist controller starts (and stops) it."""
    pytester.makepyfile(
        **{
            "clsuite/__init__": "",
            "clsuite/plugins/__init__": "",
            "clsuite/protocol/__init__": "",
            "clsuite/plugins/test_hash": SUITE,
        }
    )
    args = [
        "--cl-embedded-tasks=hash,sleep",
        f"--cl-embedded-plugins=sleep={PLUGIN_FILE}:SleepPlugin",
        "--cl-embedded-workers=1",
        "--cl-worker-wait=0.2",
        "-rs",
        *(["--cl-embedded-early"] if early else []),
    ]
    result = run(pytester, *mode, *args)
    result.assert_outcomes(passed=6, skipped=1)
    when = "started on first use, under xdist as the run begins" if early else "started on first use"
    result.stdout.fnmatch_lines(
        [f"cl: deployment under test: embedded cl_compute ({when}; 1 worker(s); capabilities: hash,sleep + sleep)"]
    )
    out = result.stdout.str()
    owner = "main" if not mode or early else "gw*"
    result.stdout.fnmatch_lines(
        [
            "deployment: embedded cl_compute 0.1.0 at http://127.0.0.1:* (mqtt mqtt://127.0.0.1:*; 1 worker(s); "
            "capabilities: hash, sleep)",
            "missing-worker policy: skip (local run)",
            f"embedded deployment started 1 time(s) (by {owner})",
            "jobs on the embedded deployment: 0 at start, 0 at the end",
        ]
    )
    result.stdout.fnmatch_lines(["| hash | 6 | 0 | 1 | 0 | 4 | * | * |"])
    match = re.search(r"embedded cl_compute 0\.1\.0 at (http://127\.0\.0\.1:\d+)", out)
    assert match is not None
    with pytest.raises(httpx.TransportError):  # stopped at the end of the run
        httpx.get(match.group(1), timeout=2)


def test_missing_server_extra_says_how_to_install(pytester: pytest.Pytester, mode: list[str]) -> None:
    pytester.makeconftest(
        """
        import sys

        saved = {}

        def pytest_configure(config):
            saved["mod"] = sys.modules.get("cl_compute.deployment")
            sys.modules["cl_compute.deployment"] = None   # as if the server extra were not installed

        def pytest_unconfigure(config):
            if saved.get("mod") is not None:
                sys.modules["cl_compute.deployment"] = saved["mod"]
            else:
                sys.modules.pop("cl_compute.deployment", None)
        """
    )
    pytester.makepyfile("def test_a(compute_client):\n    pass\n\ndef test_b(cl_deployment):\n    pass\n")
    result = run(pytester, *mode)
    assert result.ret != 0
    out = result.stdout.str()
    assert "cl_compute cannot be imported" in out and 'Install the server extra: pip install "cl-client[server]"' in out
    outcomes = result.parseoutcomes()
    assert "passed" not in outcomes and outcomes["errors"] == (1 if not mode else 2)  # serial: stops at once
    assert "During handling" not in out


def test_required_worker_not_served_by_the_embedded_deployment(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a(cl_deployment):\n    pass\n")
    result = run(pytester, "--cl-embedded-tasks", "hash", "--cl-require-workers", "exif")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*--cl-require-workers names exif, which the embedded deployment does not serve*"])


def test_embedded_deployment_honours_mqtt_off(pytester: pytest.Pytester) -> None:
    """``--cl-mqtt off`` without ``--cl-server``: the embedded deployment is used by polling only, and checks
    that need MQTT are not checked."""
    pytester.makepyfile(
        test_off="""
        import pytest

        def test_polling(cl_deployment, compute_client, tmp_path):
            assert cl_deployment.embedded and cl_deployment.mqtt_url is None
            assert compute_client.monitor is None
            f = tmp_path / "a.txt"
            f.write_text("x")
            assert compute_client.submit("hash", f).result().status == "completed"

        @pytest.mark.cl_needs_mqtt
        def test_events(compute_client):
            raise AssertionError("ran without MQTT")
        """
    )
    result = run(pytester, "--cl-mqtt", "off", "--cl-embedded-tasks=hash", "--cl-embedded-workers=1")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["deployment: embedded cl_compute * (mqtt off; 1 worker(s); capabilities: hash)"])
    result.stdout.fnmatch_lines(["*cl: not checked (1)*", "test_off.py::test_events: needs the deployment's MQTT*"])


@pytest.mark.parametrize("tasks", [["--cl-embedded-tasks=hash,unloadable"], []], ids=["listed", "default"])
def test_a_configured_task_no_worker_offers_fails_the_run(pytester: pytest.Pytester, tasks: list[str]) -> None:
    """A plugin whose backend cannot load is one clear error naming it and the worker's reason, never a green
    run of skips (issue: 33 skips and a green run)."""
    pytester.makepyfile(
        test_missing="""
        import pytest

        @pytest.mark.cl_requires("unloadable")
        def test_needs_it(compute_client):
            raise AssertionError("ran without a worker")

        def test_other(compute_client):
            pass
        """
    )
    spec = f"--cl-embedded-plugins=unloadable={PLUGIN_FILE}:UnloadablePlugin"
    result = run(pytester, *tasks, spec, "--cl-embedded-workers=1")
    assert result.ret != 0, result.stdout.str()
    result.assert_outcomes(errors=1)  # the run stops at the first test, with the reason
    result.stdout.fnmatch_lines(
        ["*Interrupted: cl: the embedded deployment * no worker offers unloadable (unloadable: the unloadable test "
         "backend is missing on purpose)*"]
    )  # fmt: skip


OWNER_FINISHES_FIRST = """
import time
import pytest

@pytest.fixture
def late():
    time.sleep(3)  # the other xdist worker starts the deployment (and so owns it)

@pytest.mark.timeout(5)
def test_owner(cl_deployment):
    assert cl_deployment.embedded

@pytest.mark.timeout(60)
def test_long_on_the_other_worker(late, cl_deployment):
    time.sleep(10)  # the owner's last test ended long ago; its 5 s timeout must not cover the wait for this one
"""


def test_the_owner_waits_for_the_other_workers_outside_its_last_tests_timeout(pytester: pytest.Pytester) -> None:
    """Under xdist the process that started the embedded deployment waits for the other workers before stopping it.
    That wait ran in the session fixture's finalizer, inside the owner's last test's teardown, so a short
    ``timeout`` on that test ended the run with a teardown error while another worker was still busy."""
    pytester.makepyfile(test_owner=OWNER_FINISHES_FIRST)
    result = run(pytester, "-n", "2", "--dist", "load", "-p", "no:randomly", "--cl-embedded-tasks=hash",
                 "--cl-embedded-workers=1")  # fmt: skip
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert "Timeout" not in out and "error" not in out.lower().split("passed")[-1], out
    result.stdout.fnmatch_lines(["jobs on the embedded deployment: 0 at start, 0 at the end"])
