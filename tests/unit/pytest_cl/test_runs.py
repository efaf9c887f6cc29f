"""pytest_cl end to end through pytester, against the session deployment (``--cl-server``/``--cl-mqtt``).

Every scenario runs serially and with ``-n 2`` (the ``mode`` fixture).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import httpx
import pytest

from tests.unit.pytest_cl.conftest import PLUGIN_FILE, Target, run

HASH_TESTS = """
import pytest

def test_md5(compute_client, tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"hello")
    record = compute_client.submit("hash", f, {"algorithm": "md5"}).result()
    assert record.status == "completed"

@pytest.mark.parametrize("n", [1, 2])
def test_sleep(compute_client, tmp_path, n):
    f = tmp_path / "a.txt"
    f.write_bytes(b"x")
    assert compute_client.submit("sleep", f, {"seconds": 0.05 * n}).result().status == "completed"
"""


def _ids(text: str) -> list[str]:
    return re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text)


def test_header_matrix_report_and_junit(pytester: pytest.Pytester, cl_target: Target, mode: list[str]) -> None:
    pytester.makepyfile(
        **{
            "clsuite/__init__": "",
            "clsuite/plugins/__init__": "",
            "clsuite/protocol/__init__": "",
            "clsuite/plugins/test_hash": HASH_TESTS,
            "clsuite/protocol/test_jobs": """
                import pytest

                def test_capabilities(compute_client, cl_deployment):
                    assert cl_deployment.offers("hash") and cl_deployment.mode == "remote"
                    assert "hash" in compute_client.get_capabilities().capabilities

                def test_broken(compute_client):
                    assert False, "deliberately broken"
            """,
            "clsuite/test_unrelated": "def test_plain():\n    pass\n",
        }
    )
    before = cl_target.job_count()
    result = run(pytester, *cl_target.args, *mode, "--cl-report", "out/report.json", "--junitxml", "out/junit.xml")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(
        [
            f"cl: deployment under test: cl_compute 0.1.0 at {cl_target.server_url} (mqtt {cl_target.mqtt_url};*",
            "cl: workers: *",
            "cl: NOT OFFERED by this deployment: clip_embedding, dino_embedding, exif, face_detection, "
            "face_embedding, hls_streaming, image_conversion, media_thumbnail: their checks are skipped and certify "
            "nothing (missing-worker policy: skip (local run))",
            "cl: missing-worker policy: skip (local run); job timeout 120 s; delete jobs after each test",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*cl: conformance matrix*",
            "| row | passed | failed | skipped | not checked | jobs | p50 ms | p95 ms |",
            "| --- |*",
            "| hash | 3 | 0 | 0 | 0 | 3 | * | * |",
            "| protocol | 1 | 1 | 0 | 0 | 0 | - | - |",
        ]
    )
    assert "| unrelated |" not in result.stdout.str()
    assert cl_target.job_count() == before
    report = json.loads((pytester.path / "out/report.json").read_text())
    rows = {r["row"]: r for r in report["matrix"]}
    assert rows["hash"]["passed"] == 3 and rows["hash"]["jobs"] == 3
    assert rows["hash"]["latency_p50_ms"] > 0 and rows["hash"]["latency_p95_ms"] >= rows["hash"]["latency_p50_ms"]
    assert rows["protocol"] == {
        "row": "protocol", "passed": 1, "failed": 1, "skipped": 0, "not_checked": 0, "jobs": 0,
        "latency_p50_ms": None, "latency_p95_ms": None,
    }  # fmt: skip
    assert report["tests"]["clsuite/protocol/test_jobs.py::test_broken"]["outcome"] == "failed"
    assert report["missing_worker_policy"] == "skip (local run)"
    markdown = (pytester.path / "out/report.md").read_text()
    assert "| hash | 3 | 0 | 0 | 0 | 3 |" in markdown and markdown.startswith("# CL conformance report")
    junit = ET.parse(pytester.path / "out/junit.xml").getroot()
    case = next(c for c in junit.iter("testcase") if c.get("name") == "test_md5")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["cl_row"] == "hash" and props["cl_tasks"] == "hash"
    job_id = props["cl_jobs"]
    assert props["cl_cleanup"] == f"{job_id}:deleted" and float(props["cl_latency_ms"]) > 0
    assert not cl_target.job_exists(job_id)


@pytest.mark.parametrize("token", ["with-token", "no-token"])
def test_failure_output_has_record_events_and_curl(
    pytester: pytest.Pytester, cl_target: Target, mode: list[str], token: str
) -> None:
    pytester.makepyfile(
        test_fails="""
        def test_job_then_assert(compute_client, tmp_path):
            f = tmp_path / "in put.txt"
            f.write_bytes(b"hello")
            compute_client.submit("hash", f, {"algorithm": "md5"}, priority=7).result()
            assert 1 == 2
        """
    )
    auth = ("--cl-token", "s3cret-token") if token == "with-token" else ()
    result = run(pytester, *cl_target.args, *mode, *auth)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    # with a token: "…$CL_TOKEN" in double quotes, so that the shell expands it; without one: no header at all
    header = '-H "Authorization: Bearer $CL_TOKEN" ' if auth else ""
    result.stdout.fnmatch_lines(
        [
            "*cl: jobs, MQTT events and requests*",
            "job * (hash) submitted *, clean-up: pending",
            "  record: {",
            '*"status": "completed",*',
            "  MQTT events (*):",
            "    *(+* ms) queued progress=0 server_ts=*",
            "    *(+* ms) completed progress=100 server_ts=*",
            "requests (token redacted: set CL_TOKEN to replay):" if auth else "requests:",
            f"  # POST {cl_target.server_url}/jobs/hash -> 200 (* ms)",
            f"  curl -sS -X POST {cl_target.server_url}/jobs/hash {header}"
            "-F algorithm=md5 -F priority=7 -F 'file=@*/in put.txt;filename=in put.txt'",
        ]
    )
    assert ("Authorization" in out) == bool(auth)
    assert "s3cret-token" not in out
    for job_id in set(_ids(out)):
        assert not cl_target.job_exists(job_id)


def test_cleanup_after_failures_errors_and_timeouts(
    pytester: pytest.Pytester, cl_target: Target, mode: list[str]
) -> None:
    pytester.makepyfile(
        test_cleanup="""
        import time
        import pytest
        from cl_client import JobTimeoutError

        @pytest.fixture
        def upload(tmp_path):
            f = tmp_path / "a.txt"
            f.write_bytes(b"x")
            return f

        def test_left_running(compute_client, upload):
            compute_client.submit("sleep", upload, {"seconds": 30, "steps": 300})
            raise RuntimeError("the test dies with a job still running")

        def test_failed_job(compute_client, upload):
            compute_client.submit("fail", upload, {"message": "boom"}).result()

        @pytest.mark.timeout(8)
        def test_job_wait_is_shorter_than_the_timeout(compute_client, upload):
            job = compute_client.submit("sleep", upload, {"seconds": 30, "steps": 300})
            started = time.monotonic()
            with pytest.raises(JobTimeoutError) as exc_info:
                job.result(timeout=60)   # clamped to the deadline: 8 s - 4 s reserve
            assert exc_info.value.timeout == 4.0, exc_info.value.timeout
            assert time.monotonic() - started >= 3.9  # it did wait (an upper bound is pytest-timeout's 8 s)
            raise AssertionError("timed out as intended")

        @pytest.mark.timeout(2)
        def test_killed_by_pytest_timeout(compute_client, upload):
            compute_client.submit("sleep", upload, {"seconds": 30, "steps": 300})
            time.sleep(30)

        def test_deletes_its_own_job(compute_client, upload, cl_jobs):
            job = compute_client.submit("hash", upload)
            job.result()
            job.delete()
            assert cl_jobs() == [job.job_id]
        """
    )
    before = cl_target.job_count()
    result = run(pytester, *cl_target.args, *mode)
    result.assert_outcomes(failed=4, passed=1)
    result.stdout.fnmatch_lines(["*JobFailedError: job * (fail) failed: boom*", "*Timeout*"])
    assert "timed out as intended" in result.stdout.str()
    assert cl_target.job_count() == before
    assert "clean-up problems" not in result.stdout.str()


def test_a_test_that_kills_its_xdist_worker_is_a_failure_in_the_matrix(
    pytester: pytest.Pytester, cl_target: Target
) -> None:
    """xdist reports the test a worker held when it died (its teardown never reports): the matrix counts it failed."""
    pytester.makepyfile(
        test_crashy="""
        import os
        import signal

        def test_ok(compute_client, tmp_path):
            f = tmp_path / "a.txt"
            f.write_bytes(b"x")
            assert compute_client.submit("hash", f).result().status == "completed"

        def test_dies(compute_client):
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = run(pytester, *cl_target.args, "-n", "2", "--cl-report", "report.json")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "| crashy | 1 | 1 | 0 | 0 | 1 |" in out, out
    report = json.loads((pytester.path / "report.json").read_text())
    outcomes = {nodeid: test["outcome"] for nodeid, test in report["tests"].items()}
    assert outcomes == {"test_crashy.py::test_ok": "passed", "test_crashy.py::test_dies": "failed"}, outcomes
    message = report["failures"]["test_crashy.py::test_dies"]["message"]
    assert "crashed while running 'test_crashy.py::test_dies'" in message, message


def test_interrupted_run_still_deletes_its_jobs(pytester: pytest.Pytester, cl_target: Target, mode: list[str]) -> None:
    pytester.makepyfile(
        test_interrupt="""
        def test_first(compute_client, tmp_path):
            f = tmp_path / "a.txt"
            f.write_text("x")
            compute_client.submit("sleep", f, {"seconds": 20, "steps": 200})
            compute_client.submit("hash", f).result()
            raise KeyboardInterrupt

        def test_second():
            pass
        """
    )
    before = cl_target.job_count()
    result = run(pytester, *cl_target.args, *mode, interrupted=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert cl_target.job_count() == before


def test_keep_jobs(pytester: pytest.Pytester, cl_target: Target, mode: list[str]) -> None:
    pytester.makepyfile(
        test_keep="""
        def test_one(compute_client, tmp_path):
            f = tmp_path / "a.txt"
            f.write_bytes(b"x")
            compute_client.submit("hash", f).result()
        """
    )
    result = run(pytester, *cl_target.args, *mode, "--cl-keep-jobs")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*cl: jobs kept (--cl-keep-jobs): 1*", "*-*-*-*-*"])
    (job_id,) = set(_ids(result.stdout.str().split("jobs kept")[1]))
    assert cl_target.job_exists(job_id)
    cl_target.delete(job_id)


@pytest.mark.parametrize(
    ("policy", "env", "outcome"),
    [
        ((), {}, {"skipped": 2, "passed": 1}),
        (("--cl-missing-worker", "xfail"), {}, {"xfailed": 2, "passed": 1}),
        (("--cl-missing-worker", "fail"), {}, {"failed": 1, "errors": 1, "passed": 1}),
        ((), {"CI": "true"}, {"failed": 1, "errors": 1, "passed": 1}),
        (("--cl-strict",), {}, {"failed": 1, "errors": 1, "passed": 1}),
    ],
    ids=["default-local-skip", "xfail", "fail", "CI-fails", "strict-fails"],
)
def test_missing_worker_policies(
    pytester: pytest.Pytester,
    cl_target: Target,
    mode: list[str],
    monkeypatch: pytest.MonkeyPatch,
    policy: tuple[str, ...],
    env: dict[str, str],
    outcome: dict[str, int],
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    pytester.makepyfile(
        test_workers="""
        import pytest

        @pytest.mark.cl_requires("face_detection")
        def test_marker(compute_client):
            pass

        def test_fixture(require_worker):
            require_worker("hash")
            require_worker("clip_embedding", "hash")

        @pytest.mark.cl_requires("hash", "sleep")
        def test_present(compute_client):
            pass
        """
    )
    result = run(pytester, *cl_target.args, *mode, *policy, "--cl-worker-wait", "0.3", "-rsx")
    result.assert_outcomes(**outcome)
    out = result.stdout.str()
    assert "cl: tests stopped for lack of a worker (2)" in out
    assert "test_workers.py::test_marker: face_detection (" in out
    assert "test_workers.py::test_fixture: clip_embedding (" in out
    assert f"cl: no worker offers face_detection at {cl_target.server_url} (available: fail, hash, sleep; " in out
    if outcome.get("skipped") or outcome.get("xfailed"):  # checks not run are called out at the end, per capability
        tail = out[out.index("cl: conformance matrix") :]
        assert "cl: NOT CERTIFIED: capabilities no worker offered" in tail
        assert "clip_embedding: 1 check(s) not run, nothing certified" in tail
        assert "face_detection: 1 check(s) not run, nothing certified" in tail
    else:
        assert "NOT CERTIFIED" not in out


PRETEND_UPSTREAM = """
import pytest
import pytest_cl.deployment

@pytest.fixture(autouse=True, scope="session")
def _pretend_upstream():   # the deployment under test is not the reference one
    old = pytest_cl.deployment.REFERENCE_SERVICE
    pytest_cl.deployment.REFERENCE_SERVICE = "not-the-reference"
    yield
    pytest_cl.deployment.REFERENCE_SERVICE = old
"""


def test_markers_destructive_and_needs_fix(pytester: pytest.Pytester, cl_target: Target, mode: list[str]) -> None:
    pytester.makeconftest(PRETEND_UPSTREAM)
    pytester.makepyfile(
        test_markers="""
        import pytest

        @pytest.mark.cl_destructive
        def test_destructive(compute_client):
            pass

        @pytest.mark.cl_needs_fix("terminal error events")
        def test_needs_fix(compute_client):
            assert False, "this deployment does not have it"

        @pytest.mark.cl_needs_fix
        def test_needs_fix_passes(compute_client):
            pass
        """
    )
    result = run(pytester, *cl_target.args, *mode, "-rsx", "--strict-markers")
    result.assert_outcomes(skipped=1, xfailed=1, xpassed=1)
    result.stdout.fnmatch_lines(
        [
            "*cl_destructive: not run against * without --cl-allow-destructive*",
            "*deployment lacks terminal error events*",
        ]
    )
    result.stdout.fnmatch_lines(
        ["*cl: deployment lacks (1)*", "test_markers.py::test_needs_fix: needs fix: terminal error events"]
    )
    result = run(pytester, *cl_target.args, *mode, "--cl-allow-destructive", "--cl-strict")
    result.assert_outcomes(passed=2, failed=1)


@pytest.mark.parametrize(
    ("listed", "outcome", "lines"),
    [
        (["# known gaps", "terminal error events", ""], 0, ["*cl: deployment lacks: as expected*"]),
        ([], 1, ["*deployment lacks: NOT as expected*", "new (not in lacks.txt): terminal error events"]),
        (
            ["terminal error events", "admin routes closed"],
            1,
            ["*deployment lacks: NOT as expected*", "expected by lacks.txt but not reported: admin routes closed"],
        ),
        (
            ["terminal error events", "priority scheduling", "? admin routes closed"],
            0,
            [
                "*cl: deployment lacks: as expected*",
                "not checked by this run (its checks did not run): priority scheduling",
            ],
        ),
    ],
    ids=["equal", "new-entry", "lost-entry", "unchecked-and-optional"],
)
def test_expect_lacks_compares_the_reported_gaps_with_a_file(
    pytester: pytest.Pytester, cl_target: Target, mode: list[str], listed: list[str], outcome: int, lines: list[str]
) -> None:
    pytester.makeconftest(PRETEND_UPSTREAM)
    pytester.makepyfile(
        test_gaps="""
        import pytest

        @pytest.mark.cl_needs_fix("terminal error events")
        @pytest.mark.parametrize("n", [1, 2])
        def test_needs_fix(compute_client, n):
            assert False, "this deployment does not have it"

        @pytest.mark.cl_needs_fix("admin routes closed")
        def test_has_the_fix(compute_client):
            pass

        @pytest.mark.cl_needs_fix("priority scheduling")
        def test_cannot_check_here(compute_client):
            pytest.skip("needs a private key")
        """
    )
    (pytester.path / "lacks.txt").write_text("\n".join(listed) + "\n")
    result = run(pytester, *cl_target.args, *mode, "--cl-expect-lacks", "lacks.txt")
    result.assert_outcomes(xfailed=2, xpassed=1, skipped=1)
    assert result.ret == outcome
    result.stdout.fnmatch_lines(lines)
    assert "test_cannot_check_here: needs fix" not in result.stdout.str()  # a skip inside the check is no lack


def test_expect_lacks_file_missing_is_a_usage_error(pytester: pytest.Pytester, cl_target: Target) -> None:
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = run(pytester, *cl_target.args, "--cl-expect-lacks", "nope.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*cl: --cl-expect-lacks: cannot read nope.txt: No such file or directory "
            "(packaged lists: upstream-2026-01, upstream-2026-02)*"
        ]
    )


def test_needs_fix_runs_normally_on_the_reference(pytester: pytest.Pytester, cl_target: Target) -> None:
    pytester.makepyfile(
        test_ref="""
        import pytest

        @pytest.mark.cl_needs_fix("anything")
        def test_needs_fix(compute_client):
            assert False
        """
    )
    run(pytester, *cl_target.args).assert_outcomes(failed=1)


def test_lifecycle_violation_fails_with_the_transcript(
    pytester: pytest.Pytester, cl_target: Target, mode: list[str]
) -> None:
    pytester.makepyfile(
        test_rogue=f"""
        import json
        import time
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        def rogue(job_id, event_type, progress):
            host, port = {cl_target.mqtt_url!r}.rsplit("/", 1)[1].split(":")
            c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
            c.connect(host, int(port))
            c.loop_start()
            stamp = time.time() * 1000 + 1000
            payload = {{"job_id": job_id, "event_type": event_type, "timestamp": stamp, "progress": progress}}
            c.publish("inference/events", json.dumps(payload), qos=1).wait_for_publish(5)
            c.loop_stop()
            c.disconnect()

        def test_event_after_terminal(compute_client, tmp_path):
            f = tmp_path / "a.txt"
            f.write_bytes(b"x")
            job = compute_client.submit("hash", f)
            job.result()
            rogue(job.job_id, "processing", 10)

        def test_failed_job_events_are_consistent(compute_client, tmp_path):
            f = tmp_path / "a.txt"
            f.write_bytes(b"x")
            job = compute_client.submit("fail", f)
            assert job.wait().status == "error"
        """
    )
    result = run(pytester, *cl_target.args, *mode)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "LifecycleViolationError: cl lifecycle check failed:",
            "  job *: 1 event(s) after the terminal 'completed' event: processing",
            "(the job records and MQTT events are in the section 'cl: jobs, MQTT events and requests')",
            "*cl: jobs, MQTT events and requests*",
            "*MQTT events (*):*",
        ]
    )
    assert "pytest_cl/plugin.py" not in result.stdout.str()  # a finding about the deployment, not a code location


def test_unreachable_server_is_one_clear_error(pytester: pytest.Pytester, mode: list[str]) -> None:
    pytester.makepyfile("def test_a(compute_client):\n    pass\n\ndef test_b(compute_client):\n    pass\n")
    result = run(pytester, "--cl-server", "http://127.0.0.1:9", *mode)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*cl: the compute API at http://127.0.0.1:9 is not reachable (*). Start the deployment or fix --cl-server*"]
    )
    assert "passed" not in result.stdout.str() and "error" not in result.stdout.str().lower()


def test_unreachable_broker_and_missing_required_worker(pytester: pytest.Pytester, cl_target: Target) -> None:
    pytester.makepyfile("def test_a(compute_client):\n    pass\n")
    result = run(pytester, "--cl-server", cl_target.server_url, "--cl-mqtt", "mqtt://127.0.0.1:9")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*cl: the MQTT broker at mqtt://127.0.0.1:9 did not accept a connection*--cl-mqtt*"])
    result = run(pytester, *cl_target.args, "--cl-require-workers", "hash,exif", "--cl-worker-wait", "0.2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no worker offers exif at *(available: fail, hash, sleep)*"])
    run(pytester, *cl_target.args, "--cl-require-workers", "hash").assert_outcomes(passed=1)


def test_polling_only_and_async_client(pytester: pytest.Pytester, cl_target: Target, mode: list[str]) -> None:
    pytester.makepyfile(
        test_async="""
        import pytest

        @pytest.mark.asyncio
        async def test_async(async_compute_client, tmp_path, cl_jobs):
            f = tmp_path / "a.txt"
            f.write_bytes(b"x")
            job = await async_compute_client.submit("hash", f)
            assert (await job.result()).status == "completed"
            assert cl_jobs() == [job.job_id]

        def test_sync(compute_client, tmp_path):
            f = tmp_path / "a.txt"
            f.write_bytes(b"x")
            assert compute_client.submit("hash", f).result().status == "completed"
            default = compute_client.__class__.__mro__[1]("http://x").config.poll_interval  # the library's
            assert compute_client.config.poll_interval < default  # no broker: it polls, and soon
        """
    )
    before = cl_target.job_count()
    result = run(pytester, "--cl-server", cl_target.server_url, "--cl-mqtt", "off", *mode)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["cl: deployment under test: cl_compute * (mqtt off; *"])
    assert cl_target.job_count() == before


def test_media_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_cl_media_fixture="""
        def test_media(cl_media):
            assert len(cl_media) > 0
            item = next(iter(cl_media))
            assert item.path.is_file()
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_plugin_module_imports_nothing_heavy(pytester: pytest.Pytester) -> None:
    code = (
        "import sys, pytest_cl.plugin\n"
        "heavy = [m for m in ('httpx', 'paho', 'pydantic', 'cl_client', 'cl_compute') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = pytester.run(sys_executable(), "-c", code)
    result.stdout.fnmatch_lines(["HEAVY []"])


def sys_executable() -> str:
    import sys

    return sys.executable


assert PLUGIN_FILE


def test_fixture_factory_and_cleanup_problems(pytester: pytest.Pytester, cl_target: Target, mode: list[str]) -> None:
    pytester.makeconftest(
        """
        import pytest
        from cl_client import ComputeClient
        from pytest_cl import factories

        quick_client = factories.compute_client(job_timeout=1.5, token="factory-token")
        polling_client = factories.compute_client(polling_only=True)

        @pytest.fixture
        def undeletable(monkeypatch):
            monkeypatch.setattr(ComputeClient, "delete_job", lambda self, job_id, **kw: None)  # "deletes" nothing
        """
    )
    pytester.makepyfile(
        test_factory="""
        import time
        import pytest
        from cl_client import JobTimeoutError

        def test_quick(quick_client, tmp_path):
            f = tmp_path / "a.txt"
            f.write_text("x")
            assert quick_client.config.token == "factory-token"
            job = quick_client.submit("sleep", f, {"seconds": 20, "steps": 200})
            with pytest.raises(JobTimeoutError) as exc_info:
                job.wait(timeout=60)
            assert exc_info.value.timeout == 1.5, exc_info.value.timeout  # the factory's job_timeout caps it

        def test_polling(polling_client, tmp_path):
            f = tmp_path / "p.txt"
            f.write_text("p")
            assert polling_client.monitor is None
            default = polling_client.__class__.__mro__[1]("http://x").config.poll_interval  # the library's
            assert polling_client.config.poll_interval < default, (polling_client.config.poll_interval, default)
            assert polling_client.submit("hash", f).result().status == "completed"

        def test_undeletable(undeletable, compute_client, tmp_path):
            f = tmp_path / "a.txt"
            f.write_text("x")
            compute_client.submit("hash", f).result()
        """
    )
    before = cl_target.job_count()
    result = run(pytester, *cl_target.args, *mode, "-W", "always::pytest_cl.plugin.ClCleanupWarning")
    result.assert_outcomes(passed=3)
    out = result.stdout.str()
    problem = "job * (hash) of test_factory.py::test_undeletable is still on the server after DELETE (status completed)"
    result.stdout.fnmatch_lines(["*cl: clean-up problems (1)*", problem])
    assert "ClCleanupWarning" in out
    leftover = _ids(out.split("clean-up problems")[1])[0]
    assert cl_target.job_exists(leftover)
    cl_target.delete(leftover)
    assert cl_target.job_count() == before


def test_session_client_serves_session_fixtures_and_cleans_up_at_the_end(
    pytester: pytest.Pytester, cl_target: Target, mode: list[str]
) -> None:
    """A session fixture submits through ``cl_session_client``: its job lives for the whole run and is deleted
    at the end; a job a test submits through the same client belongs to that test (``cl_jobs``)."""
    pytester.makeconftest(
        """
        import pathlib
        import pytest

        IDS = pathlib.Path(__file__).parent / "ids"

        @pytest.fixture(scope="session")
        def shared_job(cl_session_client, tmp_path_factory):
            path = tmp_path_factory.mktemp("in") / "a.bin"
            path.write_bytes(b"shared bytes")
            record = cl_session_client.submit("hash", path, {"algorithm": "md5"}).result(30)
            with IDS.open("a") as f:
                f.write(f"session {record.job_id}\\n")
            return record
        """
    )
    pytester.makepyfile(
        test_shared="""
        import hashlib
        from conftest import IDS

        def test_a(shared_job, cl_jobs):
            assert shared_job.status == "completed"
            assert cl_jobs() == []

        def test_b(shared_job, cl_session_client, cl_jobs, tmp_path):
            p = tmp_path / "b.bin"
            p.write_bytes(b"own")
            job = cl_session_client.submit("hash", p)
            assert job.wait(30).status == "completed"
            assert cl_jobs() == [job.job_id] and shared_job.job_id not in cl_jobs()
            with IDS.open("a") as f:
                f.write(f"test {job.job_id}\\n")
        """
    )
    before = cl_target.job_count()
    run(pytester, *cl_target.args, *mode).assert_outcomes(passed=2)
    ids = [line.split() for line in (pytester.path / "ids").read_text().splitlines()]
    assert {kind for kind, _ in ids} == {"session", "test"}
    with httpx.Client(base_url=cl_target.server_url, timeout=10) as http:
        for kind, job_id in ids:
            assert http.get(f"/jobs/{job_id}").status_code == 404, f"{kind} job {job_id} was left behind"
    assert cl_target.job_count() == before
    (pytester.path / "ids").unlink()
    result = run(pytester, *cl_target.args, "--cl-keep-jobs", "-k", "test_a")
    result.assert_outcomes(passed=1)
    kept = (pytester.path / "ids").read_text().split()[1]
    assert kept in result.stdout.str()
    with httpx.Client(base_url=cl_target.server_url, timeout=10) as http:
        assert http.get(f"/jobs/{kept}").status_code == 200
        assert http.delete(f"/jobs/{kept}").status_code in (200, 204)
