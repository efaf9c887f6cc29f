"""The plugin's pure parts and its shared-deployment protocol, without inner pytest runs where possible."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path, PurePath

import pytest

from pytest_cl._events import RecordedEvent
from pytest_cl._jobs import RequestRecord
from pytest_cl._lifecycle import check_job, in_server_order
from pytest_cl._runtime import job_deadline
from pytest_cl.config import Settings
from pytest_cl.deployment import (
    DeploymentInfo,
    DeploymentUnavailableError,
    EmbeddedDeployment,
    probe,
    read_state,
)
from pytest_cl.report import Results, percentile, row_for_path, terminal_sections
from tests.unit.pytest_cl.conftest import PLUGIN_FILE, Target, run


def ev(kind: str, progress: float | None, ts: float | None, received: float = 0.0) -> RecordedEvent:
    return RecordedEvent(received, kind, progress, ts)


# -- lifecycle -------------------------------------------------------------------------------------------
def test_a_consistent_job_has_no_findings() -> None:
    events = [ev("queued", 0, 1), ev("processing", 0, 2), ev("processing", 50, 3), ev("completed", 100, 4)]
    assert check_job("j", events, "completed", terminal_event=events[-1], deadline=5, fix_required=True) == []


def test_late_delivery_of_an_earlier_event_is_not_a_violation() -> None:
    events = [ev("processing", 0, 2), ev("completed", 100, 4), ev("queued", 0, 1)]
    assert [e.event_type for e in in_server_order(events)] == ["queued", "processing", "completed"]
    assert check_job("j", events, "completed", terminal_event=events[1], deadline=5, fix_required=True) == []


def test_violations() -> None:
    decreasing = [ev("processing", 60, 1), ev("processing", 40, 2), ev("completed", 100, 3)]
    (finding,) = check_job("j", decreasing, "completed", terminal_event=decreasing[-1], deadline=5, fix_required=True)
    assert (finding.kind, finding.message) == ("violation", "job j: progress decreased from 60 to 40")
    late = [ev("completed", 100, 3), ev("processing", 100, 9), ev("error", None, 10)]
    (finding,) = check_job("j", late, "completed", terminal_event=late[0], deadline=5, fix_required=True)
    assert finding.message == "job j: 2 event(s) after the terminal 'completed' event: processing, error"
    other = [ev("error", None, 3)]
    (finding,) = check_job("j", other, "completed", terminal_event=other[0], deadline=5, fix_required=True)
    assert finding.message == "job j: terminal event 'error' disagrees with REST status 'completed'"
    (finding,) = check_job("j", [], "completed", terminal_event=None, deadline=2.5, fix_required=False)
    assert finding.message == "job j: REST says 'completed' but no terminal event arrived within 2.5 s"


def test_a_silent_failure_is_a_lack_unless_the_fix_is_required() -> None:
    (lack,) = check_job("j", [], "error", terminal_event=None, deadline=5, fix_required=False)
    assert lack.kind == "lack" and "terminal 'error' events over MQTT" in lack.message
    (violation,) = check_job("j", [], "error", terminal_event=None, deadline=5, fix_required=True)
    assert violation.kind == "violation"


def test_events_without_timestamps_keep_arrival_order() -> None:
    events = [ev("processing", 10, None), ev("queued", 0, 1)]
    assert in_server_order(events) == events
    assert "received" not in ev("queued", None, None, 1.5).line(1.0)
    assert ev("queued", 5, 1234, 1.5).line(1.0).endswith("(+  500.0 ms) queued progress=5 server_ts=1234")


# -- deadlines, requests ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("job_timeout", "test_timeout", "expected"),
    [(120, None, 120), (120, 0, 120), (120, 10, 5), (120, 4, 2), (3, 300, 3), (120, 300, 120)],
)
def test_job_deadline_is_shorter_than_the_test_timeout(
    job_timeout: float, test_timeout: float | None, expected: float
) -> None:
    assert job_deadline(job_timeout, test_timeout) == expected


def test_curl_quotes_and_redacts() -> None:
    req = RequestRecord(
        "t", 0.0, "POST", "http://h/jobs/hash", 200, 3.0, (("tags", "a b"),), ("file", "x y.jpg", "/tmp/x y.jpg"),
        auth=True,
    )  # fmt: skip
    # double quotes: the shell expands $CL_TOKEN (single quotes would send the literal text)
    assert req.curl() == (
        "curl -sS -X POST http://h/jobs/hash -H \"Authorization: Bearer $CL_TOKEN\" -F 'tags=a b' "
        "-F 'file=@/tmp/x y.jpg;filename=x y.jpg'"
    )
    no_auth = RequestRecord("t", 0.0, "GET", "http://h/jobs/1", 200, 1.0)
    assert no_auth.curl() == "curl -sS -X GET http://h/jobs/1"
    failed = RequestRecord("t", 0.0, "GET", "http://h/", None, 1.0, error="ConnectError: refused")
    assert failed.line() == "GET http://h/ -> failed: ConnectError: refused (1.0 ms)"


# -- report ----------------------------------------------------------------------------------------------
def test_percentile() -> None:
    assert percentile([], 50) is None
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([10], 95) == 10
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)


@pytest.mark.parametrize(
    ("path", "row"),
    [
        ("pytest_cl/conformance/plugins/test_face_detection.py", "face_detection"),
        ("pytest_cl/conformance/protocol/test_jobs.py", "protocol"),
        ("pytest_cl/conformance/workflows/test_album.py", "workflows"),
        ("tests/test_misc.py", "misc"),
        ("checks/upload_test.py", "upload"),
    ],
)
def test_rows_from_paths(path: str, row: str) -> None:
    assert row_for_path(PurePath(path)) == row


def _rep(nodeid: str, when: str, outcome: str = "passed", row: str | None = "r") -> pytest.TestReport:
    """A report as pytest (or xdist, ``when="???"``) makes it; ``row``: the plugin's row property."""
    props = [("cl_row", row)] if row and when != "???" else []
    longrepr = {"failed": "boom", "skipped": ("f.py", 1, "Skipped: no")}.get(outcome)
    return pytest.TestReport(
        nodeid,
        ("f.py", 0, nodeid),
        {},
        outcome,
        longrepr,
        when,
        user_properties=props,
    )


def _crash(nodeid: str) -> pytest.TestReport:
    return _rep(nodeid, "???", "failed")


@pytest.mark.parametrize("interrupted", [True, False], ids=["interrupted", "crashed"])
def test_tests_without_a_teardown_report_are_settled(interrupted: bool) -> None:
    """xdist: each worker holds its last test; when it goes down, that test has no teardown report and a "???" one."""
    results = Results()
    for when in ("setup", "call", "teardown"):
        results.add(_rep("f::whole", when))  # an ordinary test
    for when in ("setup", "call", "teardown"):
        results.add(_rep("f::late_crash", when))
    results.add(_crash("f::late_crash"))  # xdist reported it after its teardown
    results.add(_rep("f::held", "setup"))
    results.add(_rep("f::held", "call", "failed"))  # finished (failed), its teardown never reported
    results.add(_crash("f::held"))
    results.add(_rep("f::cut", "setup"))  # stopped in its call phase
    results.add(_crash("f::cut"))
    results.add(_rep("f::plain", "setup"))
    results.add(_rep("f::plain", "call", "skipped"))  # no teardown and no crash report (serial Ctrl-C)
    results.settle_unfinished(interrupted=interrupted)
    outcomes = {nodeid: outcome for nodeid, (_, outcome, _) in results.tests.items()}
    if interrupted:
        assert outcomes == {"f::whole": "passed", "f::late_crash": "passed", "f::held": "failed", "f::plain": "skipped"}
        assert results.stopped_not_crashed == (2, 1)
        assert results.stopped_not_crashed_line() == (
            "cl: xdist lists 3 check(s) as 'worker crashed': their workers were stopped by the interrupt, not "
            "crashed. The matrix counts the finished ones (2) with their outcome and leaves out the interrupted "
            "ones (1)"
        )
        assert "crashed" not in str(results.failures), results.failures
    else:
        assert outcomes == {
            "f::whole": "passed",
            "f::late_crash": "failed",
            "f::held": "failed",
            "f::cut": "failed",
            "f::plain": "skipped",
        }
        assert results.stopped_not_crashed_line() is None
        assert results.failures["f::cut"]["message"] == "[???] boom", results.failures["f::cut"]
    results.settle_unfinished(interrupted=interrupted)  # a second call changes nothing
    assert {nodeid: outcome for nodeid, (_, outcome, _) in results.tests.items()} == outcomes


def test_report_sections_and_files(tmp_path: Path) -> None:
    results = Results()
    results.tests = {
        "a::t1": ("hash", "passed", [10.0, 30.0]),
        "a::t2": ("hash", "failed", []),
        "b::t": ("exif", "skipped", []),
        "b::u": ("exif", "not checked", []),
    }
    results.job_counts = {"a::t1": 2}
    results.missing_workers = [("b::t", "exif", "skipped")]
    results.lacks = [("a::t2", "needs fix: x")]
    results.not_checked = [("b::u", "needs MQTT")]
    results.problems = ["job 1 could not be deleted"]
    results.kept = ["k1"]
    results.add_session("gw0", {"starts": 1, "jobs_at_start": 0, "jobs_at_end": 0, "problems": ["p2"], "kept": ["k2"]})
    sections = dict(terminal_sections(results, "dep", "skip (local run)"))
    assert sections["cl: deployment under test"] == [
        "deployment: dep",
        "missing-worker policy: skip (local run)",
        "embedded deployment started 1 time(s) (by gw0)",
        "jobs on the embedded deployment: 0 at start, 0 at the end",
    ]
    assert sections["cl: clean-up problems (2)"] == ["job 1 could not be deleted", "p2"]
    assert sections["cl: jobs kept (--cl-keep-jobs): 2"] == ["k1", "k2"]
    assert sections["cl: not checked (1)"] == ["b::u: needs MQTT"]
    assert sections["cl: conformance matrix"][2:] == [
        "| exif | 0 | 0 | 1 | 1 | 0 | - | - |",
        "| hash | 1 | 1 | 0 | 0 | 2 | 20 | 29 |",
    ]
    json_path, md_path = results.write(tmp_path / "r" / "report.json", "dep", "skip")
    data = json.loads(json_path.read_text())
    assert data["embedded_jobs"] == [{"owner": "gw0", "at_start": 0, "at_end": 0}]
    assert data["deployment_lacks"] == [{"test": "a::t2", "lack": "needs fix: x"}]
    assert data["not_checked"] == [{"test": "b::u", "reason": "needs MQTT"}]
    assert [r["not_checked"] for r in data["matrix"]] == [1, 0]
    md = md_path.read_text()
    headings = ("## Skipped for lack of a worker", "## Deployment lacks", "## Not checked", "## Clean-up problems")
    for heading in (*headings, "## Kept jobs"):
        assert heading in md
    assert results.write(tmp_path / "report.md", "dep", "skip")[1].name == "report.md.md"


def test_deployment_info_round_trip() -> None:
    info = DeploymentInfo("remote", "http://h:1", None, "cl_compute", "1", "on", ("a", "b"), ("w1",), 1)
    assert DeploymentInfo.from_json(info.to_json()) == info
    assert info.is_reference and not info.embedded and info.offers("a") and not info.offers("c")
    assert info.describe() == "cl_compute 1 at http://h:1 (mqtt off; 1 worker(s); capabilities: a, b)"
    found = dataclasses.replace(info, mqtt_url="mqtt://h:1883", mqtt_discovered=True)
    assert DeploymentInfo.from_json(found.to_json()) == found
    assert found.describe() == (
        "cl_compute 1 at http://h:1 (mqtt mqtt://h:1883 (discovered); 1 worker(s); capabilities: a, b)"
    )


# -- the deployment under test -----------------------------------------------------------------------------
def test_probe_names_a_wrong_url(cl_target: Target) -> None:
    with pytest.raises(DeploymentUnavailableError, match=r"answered 404 to GET .*/nope/.*Is --cl-server"):
        probe(Settings(server=f"{cl_target.server_url}/nope", mqtt="off"))


def _release_waits_for_the_other(owner: EmbeddedDeployment, other: EmbeddedDeployment, shared: Path) -> None:
    """The owner's ``release`` waits while ``other`` is still in the run, and stops once it left."""
    stopper = threading.Thread(target=owner.release)
    stopper.start()
    stopper.join(0.3)
    assert stopper.is_alive(), f"{owner.process_id} must wait while {other.process_id} is still in the run"
    other.leave()
    stopper.join(30)
    assert not stopper.is_alive() and read_state(shared)["status"] == "stopped"


def test_shared_embedded_deployment_protocol(tmp_path: Path) -> None:
    """Two xdist workers simulated in one process: the first starts, the second attaches through the state
    file, and the owner stops only after the other left."""
    settings = Settings(embedded_workers=1, embedded_tasks=("hash",))
    owner = EmbeddedDeployment(settings, tmp_path, "gw0")
    other = EmbeddedDeployment(settings, tmp_path, "gw1")
    owner.join()
    other.join()
    info = owner.acquire()
    try:
        assert owner.owner and owner.starts == 1 and owner.jobs_at_start == 0
        assert other.acquire() == info and not other.owner and other.starts == 0
        assert read_state(tmp_path)["status"] == "running"
        _release_waits_for_the_other(owner, other, tmp_path)
        assert owner.jobs_at_end == 0
    finally:
        other.leave()
        owner.release()


def test_the_controller_starts_early_on_a_thread_and_the_workers_attach(tmp_path: Path) -> None:
    """``start_early`` (the xdist controller, ``--cl-embedded-early``): the deployment starts on a thread, the
    workers attach to it, it stays up after the start (its processes' parent-death signal follows the thread
    that started them, so that thread must live on), and ``release`` stops it after the workers left."""
    import httpx

    settings = Settings(embedded_workers=1, embedded_tasks=("hash",))
    controller = EmbeddedDeployment(settings, None, "main")
    worker = EmbeddedDeployment(settings, tmp_path, "gw0")
    worker.join()
    controller.start_early(tmp_path)
    try:
        deadline = time.monotonic() + 120
        while controller.info is None:  # the controller's thread starts it (a worker comes a second later)
            assert time.monotonic() < deadline, "the early start did not finish"
            time.sleep(0.05)
        info = worker.acquire()
        assert not worker.owner and worker.starts == 0
        assert controller.owner and controller.starts == 1 and controller.info == info
        assert read_state(tmp_path)["owner"] == "main"
        threads = [t.name for t in threading.enumerate()]
        assert "cl-embedded-early-start" in threads, f"the starting thread ended: {threads}"
        for _ in range(3):  # still up a while after its start
            assert httpx.get(f"{info.server_url}/capabilities", timeout=10).json()["num_workers"] == 1
            threading.Event().wait(0.3)
        _release_waits_for_the_other(controller, worker, tmp_path)
        assert "cl-embedded-early-start" not in [t.name for t in threading.enumerate()]
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{info.server_url}/capabilities", timeout=5)
    finally:
        worker.leave()
        controller.release()


def test_an_early_start_that_fails_is_reported_by_the_workers(tmp_path: Path) -> None:
    settings = Settings(embedded_tasks=("hash",), require_workers=("exif",))  # refused before anything starts
    controller = EmbeddedDeployment(settings, None, "main")
    controller.start_early(tmp_path)
    try:
        with pytest.raises(DeploymentUnavailableError, match=r"--cl-require-workers names exif"):
            EmbeddedDeployment(settings, tmp_path, "gw0").acquire()
        assert read_state(tmp_path)["status"] == "failed"
    finally:
        controller.release()
    assert not controller.owner and "cl-embedded-early-start" not in [t.name for t in threading.enumerate()]


def test_a_failed_start_is_reported_by_every_worker_without_retrying(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text(json.dumps({"status": "failed", "error": "cl: it broke", "owner": "gw0"}))
    with pytest.raises(DeploymentUnavailableError, match=r"^cl: it broke$"):
        EmbeddedDeployment(Settings(), tmp_path, "gw1").acquire()


def test_async_fixture_without_pytest_asyncio(pytester: pytest.Pytester, cl_target: Target) -> None:
    pytester.makepyfile("def test_a(async_compute_client):\n    pass\n")
    result = pytester.runpytest("-p", "no:asyncio", "-p", "no:cacheprovider", *cl_target.args)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*async_compute_client needs pytest-asyncio, which the pytest extra installs: "
            'pip install "cl-client[[]pytest]"*'
        ]
    )


def test_the_pytest_extra_brings_what_every_fixture_needs() -> None:
    """``async_compute_client`` needs pytest-asyncio: the ``pytest`` extra (and so ``conformance``) installs it."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text(encoding="utf-8"))
    extra = [str(r) for r in pyproject["project"]["optional-dependencies"]["pytest"]]
    assert any(r.startswith("pytest-asyncio") for r in extra), extra


def test_job_wait_deadline_follows_the_test_timeout(
    pytester: pytest.Pytester, cl_target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_ini(_cl_test):
            print("DEADLINE ini", _cl_test)

        @pytest.mark.timeout(4)
        def test_marker(_cl_test):
            print("DEADLINE marker", _cl_test)

        @pytest.mark.timeout(timeout=300)
        def test_marker_kw(_cl_test):
            print("DEADLINE marker_kw", _cl_test)
        """
    )
    result = run(pytester, *cl_target.args, "-s", "-o", "timeout=10", "--cl-job-timeout", "60")
    result.stdout.fnmatch_lines(["*DEADLINE ini 5.0", "*DEADLINE marker 2.0", "*DEADLINE marker_kw 60.0"])
    monkeypatch.setenv("PYTEST_TIMEOUT", "8")
    result = run(pytester, *cl_target.args, "-s", "-k", "ini")
    result.stdout.fnmatch_lines(["*DEADLINE ini 4.0"])
    result = run(pytester, *cl_target.args, "-s", "-k", "ini", "--timeout", "20")
    result.stdout.fnmatch_lines(["*DEADLINE ini 15.0"])


assert PLUGIN_FILE


def test_probe_checks_the_credentials_on_a_job_route() -> None:
    """``/`` and ``/capabilities`` are public: the probe proves job access with a GET of a job that cannot exist
    (404 = allowed), so a bad token is one clear error instead of every test failing on its own."""
    from cl_compute.auth import generate_keypair, mint_token
    from cl_compute.deployment import Deployment

    private_pem, public_pem = generate_keypair()
    with Deployment(workers=1, tasks=["hash"], auth_public_key=public_pem) as dep:
        base = Settings(server=dep.server_url, mqtt="off")
        good = mint_token(private_pem)
        assert probe(Settings(server=dep.server_url, mqtt="off", token=good)).server_url == dep.server_url
        with pytest.raises(DeploymentUnavailableError, match=r"job routes of .* refused the credentials.*--cl-token"):
            probe(base)
        with pytest.raises(DeploymentUnavailableError, match=r"refused the credentials"):
            probe(Settings(server=dep.server_url, mqtt="off", token=mint_token(generate_keypair()[0])))
        with pytest.raises(DeploymentUnavailableError, match=r"may not run jobs.*ai_inference_support"):
            probe(Settings(server=dep.server_url, mqtt="off", token=mint_token(private_pem, permissions=[])))


def test_lack_keys_merge_the_same_gap_from_checks_and_jobs() -> None:
    from pytest_cl._lacks import ExpectedLacks, compare_lacks, lack_key, parse_expected
    from pytest_cl._lifecycle import FAILURE_EVENTS_FIX

    job_a = "job 0b1c2d3e-0000-4000-8000-000000000001 ended 'error' without an event: " + FAILURE_EVENTS_FIX
    job_b = "job 0b1c2d3e-0000-4000-8000-000000000002 ended 'error' without an event: " + FAILURE_EVENTS_FIX
    assert lack_key(job_a) == lack_key(job_b) == FAILURE_EVENTS_FIX
    assert lack_key("needs fix: a real updated_at (upstream echoes created_at)") == (
        "a real updated_at (upstream echoes created_at)"
    )
    result = compare_lacks([job_a, job_b, "needs fix: x"], ExpectedLacks(frozenset({FAILURE_EVENTS_FIX, "y"})), "f")
    assert (result.new, result.lost, result.ok) == (("x",), ("y",), False)
    assert compare_lacks([job_a], ExpectedLacks(frozenset({FAILURE_EVENTS_FIX})), "f.txt").ok
    expected = parse_expected("# comment\n\n  a  \n? b\n?c\n")
    assert (expected.required, expected.optional) == ({"a"}, {"b", "c"})
    assert compare_lacks(["needs fix: a"], expected, "f").ok  # optional entries may be missing ...
    assert compare_lacks(["needs fix: a", "needs fix: b", "needs fix: c"], expected, "f").ok  # ... or reported
    assert compare_lacks(["needs fix: b"], expected, "f").lost == ("a",)


def test_readme_lists_exactly_the_packaged_upstream_lacks() -> None:
    from pytest_cl._lacks import parse_expected, read_expected

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    marker = "<!-- upstream-2026-01.lacks:"
    assert marker in readme, "the README lost its copy of the upstream-2026-01 list"
    block = readme[readme.index(marker) :].split("```text\n", 1)[1].split("```", 1)[0]
    listed = [line for line in block.splitlines() if line.strip()]
    assert len(listed) == len(set(listed)), f"the README lists an entry twice: {listed}"
    assert parse_expected("\n".join(listed)) == read_expected("upstream-2026-01"), (
        "README.md's list of upstream's gaps differs from pytest_cl/conformance/expected/upstream-2026-01.lacks"
    )
