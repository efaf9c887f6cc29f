"""Certification time against the deployment's limit (``pytest_cl/_timing.py``): busy, idle with jobs queued,
suites alone, wall; in the JSON report, the terminal summary and the HTML report.

The accounting on hand-made time lines (every case computed by hand), then one real run through pytester
against the session deployment (2 workers; ``sleep`` jobs of 0.5 s submitted one after another).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pytest_cl
from pytest_cl._timing import certification_time, from_report
from pytest_cl.conformance.conftest import DEPLOYMENT_LIGHT, LONGEST_FIRST
from tests.unit.pytest_cl.conftest import Target, run


def job(submitted: float, queued: float | None, processing: float | None, terminal: float | None, i: int = 0):
    return {"id": f"j{i}-{submitted}", "submitted": submitted, "queued": queued, "processing": processing,
            "terminal": terminal}  # fmt: skip


def test_two_workers_in_parallel_are_busy_half_the_processing_time() -> None:
    jobs = [job(0, 0.1, 0.2, 4.2, 1), job(0, 0.1, 0.2, 4.2, 2)]
    t = certification_time(jobs, workers=2, started=-1.0, finished=6.0)
    assert math.isclose(t.busy, 4.0) and t.jobs == 2 and t.workers == 2
    assert math.isclose(t.idle_queued, 0.1)  # both queued 0.1 -> 0.2 with both workers free
    assert math.isclose(t.suites, 1.0 + 1.8)  # before the first submit and after the last terminal
    assert math.isclose(t.wall, 7.0) and t.ratio is not None and math.isclose(t.ratio, 7 / 4)


def test_a_polling_worker_is_idle_with_a_job_queued_and_that_is_the_deployments() -> None:
    """Upstream's January stack: the job waits up to 5 s for an idle worker's poll."""
    jobs = [job(0, 0.05, 5.0, 5.5, 1), job(6, 6.05, 11.0, 11.5, 2)]
    t = certification_time(jobs, workers=4, started=0.0, finished=12.0)
    assert math.isclose(t.idle_queued, 4.95 + 4.95)
    assert math.isclose(t.busy, 1.0 / 4)
    assert math.isclose(t.suites, 0.5 + 0.5)
    data = t.as_dict()
    assert data["idle_with_jobs_queued_s"] == 9.9 and data["wall_over_busy"] == 48.0
    assert "idle with jobs queued 9.9 s" in t.line() and "48.0x the deployment's limit" in t.line()


def test_a_full_deployment_with_a_queue_is_not_idle() -> None:
    # one worker: job 2 waits while job 1 runs -> not idle; nothing waits once job 2 runs
    jobs = [job(0, 0, 0, 2, 1), job(0, 0, 2, 4, 2)]
    t = certification_time(jobs, workers=1, started=0.0, finished=4.0)
    assert t.idle_queued == 0 and math.isclose(t.busy, 4.0) and t.suites == 0


def test_jobs_without_times_and_a_report_without_bounds() -> None:
    jobs = [job(1, None, None, None, 1), job(2, 2.1, 2.5, 3.0, 2)]
    t = certification_time(jobs, workers=0, started=None, finished=None)
    assert t.workers == 1 and t.jobs == 1 and math.isclose(t.busy, 0.5) and math.isclose(t.wall, 2.0)
    empty = certification_time([], workers=2, started=0.0, finished=3.0)
    assert empty.ratio is None and empty.suites == 3.0 and empty.as_dict()["wall_over_busy"] is None
    shared = {"a": [job(0, 0, 1, 2, 7)], "b": [job(0, 0, 1, 2, 7)]}  # one job seen by two tests counts once
    assert from_report(shared, {"num_workers": 2}, 0.0, 2.0).jobs == 1


SUITE = """
import pytest

@pytest.mark.parametrize("n", range(4))
def test_sleep(compute_client, tmp_path, n):
    f = tmp_path / "in.txt"
    f.write_bytes(b"x")
    assert compute_client.submit("sleep", f, {"seconds": 0.5}).result().status == "completed"
"""


def test_report_terminal_and_html_state_the_certification_time(pytester: pytest.Pytester, cl_target: Target) -> None:
    pytester.makepyfile(**{"clsuite/__init__": "", "clsuite/plugins/__init__": "",
                           "clsuite/plugins/test_sleepy": textwrap.dedent(SUITE)})  # fmt: skip
    result = run(pytester, *cl_target.args, "--cl-report", "out/cert.html")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*cl: certification time*", "wall * s = *x the deployment's limit; deployment busy *"
                                 " s (4 jobs / 2 worker(s)), idle with jobs queued * s; suites alone * s"])  # fmt: skip
    data = json.loads((pytester.path / "out/cert.json").read_text())
    timing = data["certification_time"]
    assert timing["jobs"] == 4 and timing["workers"] == 2
    assert timing["busy_s"] >= 4 * 0.5 / 2  # each sleep job processes at least 0.5 s
    assert timing["wall_s"] >= timing["busy_s"] and timing["wall_over_busy"] >= 1
    assert 0 <= timing["suites_alone_s"] <= timing["wall_s"]
    page = (pytester.path / "out/cert.html").read_text()
    assert 'id="certification-time"' in page and "idle with jobs queued" in page


MODULE_JOBS = """
import pytest


@pytest.fixture(scope="module")
def two_sleeps(cl_session_client, tmp_path_factory):
    f = tmp_path_factory.mktemp("in") / "in.txt"
    f.write_bytes(b"x")
    jobs = [cl_session_client.submit("sleep", f, {"seconds": 0.6}) for _ in range(2)]
    return [job.result() for job in jobs]


def test_both_ended(two_sleeps):
    assert [r.status for r in two_sleeps] == ["completed", "completed"]


def test_one_more(compute_client, tmp_path):
    f = tmp_path / "in.txt"
    f.write_bytes(b"x")
    assert compute_client.submit("sleep", f, {"seconds": 0.6}).result().status == "completed"
"""


def test_jobs_of_module_fixtures_count_in_the_certification_time(
    pytester: pytest.Pytester, cl_target: Target, mode: list[str]
) -> None:
    """A module fixture's jobs belong to no test (a workflow submitted once for its checks): the busy time must
    still count them, serially and when an xdist worker hands its session data to the controller; left out,
    the deployment looked idle with jobs queued while it ran them."""
    pytester.makepyfile(**{"clsuite/__init__": "", "clsuite/plugins/__init__": "",
                           "clsuite/plugins/test_fixture_jobs": textwrap.dedent(MODULE_JOBS)})  # fmt: skip
    result = run(pytester, *cl_target.args, *mode, "--cl-report", "out/cert.html")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["wall * s = *; deployment busy * s (3 jobs / 2 worker(s)), *"])
    data = json.loads((pytester.path / "out/cert.json").read_text())
    timing = data["certification_time"]
    assert timing["jobs"] == 3, f"expected the 2 fixture jobs and the test's job, counted: {timing}"
    fixture_jobs = [j for jobs in data["session_jobs"].values() for j in jobs]
    assert [j["task"] for j in fixture_jobs] == ["sleep", "sleep"], data["session_jobs"]
    assert timing["busy_s"] >= 3 * 0.6 / 2, timing  # each sleep job processes at least 0.6 s


LATE_LOOK = """
import json
import time
from pathlib import Path

from cl_client import ComputeClient
from pytest_cl import factories

polling_client = factories.compute_client(polling_only=True)


def test_late_look(polling_client, tmp_path):
    f = tmp_path / "in.txt"
    f.write_bytes(b"x")
    job = polling_client.submit("sleep", f, {"seconds": 0.2})
    with ComputeClient(polling_client.config.server_url, mqtt_url="off") as plain:  # untracked: not the fixture
        deadline = time.monotonic() + 60
        while plain.get_job(job.job_id).status != "completed":
            assert time.monotonic() < deadline, "the sleep job did not complete"
            time.sleep(0.05)
    time.sleep(1.0)  # the witness has long seen the terminal event; the fixture client has not looked yet
    looked = time.time()
    assert job.result().status == "completed"
    (Path(__file__).parents[2] / "looked.json").write_text(json.dumps(looked))
"""


def test_a_jobs_end_is_the_deployments_not_when_a_polling_client_looked(
    pytester: pytest.Pytester, cl_target: Target
) -> None:
    """The time line's ``terminal`` is the witness's terminal event, so the busy time is not stretched by polls."""
    pytester.makepyfile(**{"clsuite/__init__": "", "clsuite/plugins/__init__": "",
                           "clsuite/plugins/test_late": textwrap.dedent(LATE_LOOK)})  # fmt: skip
    result = run(pytester, *cl_target.args, "--cl-report", "out/cert.html")
    result.assert_outcomes(passed=1)
    looked = json.loads((pytester.path / "looked.json").read_text())
    data = json.loads((pytester.path / "out/cert.json").read_text())
    [job] = [j for test in data["tests"].values() for j in test["jobs"]]
    assert job["terminal"] is not None and job["processing"] is not None
    assert job["terminal"] < looked, f"terminal {job['terminal']} is when the fixture client looked ({looked})"


def _collected_modules(order: str | None) -> list[str]:
    conformance = Path(pytest_cl.__file__).parent / "conformance"
    env = {k: v for k, v in os.environ.items() if k != "CL_CONFORMANCE_ORDER"}
    if order is not None:
        env["CL_CONFORMANCE_ORDER"] = order
    done = subprocess.run(
        [sys.executable, "-P", "-m", "pytest", "-c", os.devnull, "--rootdir", str(conformance), "--confcutdir",
         str(conformance), "-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function",
         "--collect-only", "-q", str(conformance)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    modules: list[str] = []
    for line in done.stdout.splitlines():
        if "::" in line and (module := line.split("::", 1)[0]) not in modules:
            modules.append(module)
    assert modules, done.stdout[-2000:] + done.stderr[-2000:]
    return modules


def test_certify_starts_the_modules_with_the_longest_jobs_first() -> None:
    """Under ``--dist loadscope --no-loadscope-reorder`` xdist hands out modules in collection order: the modules
    that wait longest (a frozen worker's keep-alive) and the HLS jobs must not start last."""
    modules = _collected_modules(None)
    assert modules[:2] == ["protocol/test_worker_freeze.py", "plugins/test_hls_streaming.py"], modules[:4]
    assert set(LONGEST_FIRST) | set(DEPLOYMENT_LIGHT) <= set(modules)  # the lists name real modules
    rest = [i for i, m in enumerate(modules) if m not in LONGEST_FIRST + DEPLOYMENT_LIGHT]
    light = [modules.index(m) for m in DEPLOYMENT_LIGHT]
    assert rest and max(light) < min(rest), f"the run must end on modules that submit jobs: {modules[-6:]}"
    collected = _collected_modules("collected")
    assert sorted(collected) == sorted(modules) and collected != modules
