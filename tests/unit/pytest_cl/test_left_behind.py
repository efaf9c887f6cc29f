"""Nothing left behind: SIGTERM/SIGHUP clean up like Ctrl-C; after a hard stop the next run deletes the jobs.

The runs under test are real pytest processes against a real 1-worker ``hash`` deployment of this module. Their
tests submit an ``exif`` job, which no worker of it serves, so the job stays queued and the test waits inside
``Job.result()``; before waiting, each writes the job id to a marker file. The signals are sent once the
markers exist (condition waits, no sleeps).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cl_compute.deployment import Deployment
from tests.unit.pytest_cl.conftest import QUIET, Target

#: how long a run may take to reach the wait, and to end after a signal (generous: the machine is shared)
PATIENCE_S = 180.0

WAITING_TESTS = """
import os
from pathlib import Path

MARKERS = Path({markers!r})


def _wait(compute_client, tmp_path, name):
    upload = tmp_path / "a.jpg"
    upload.write_bytes(b"not really a jpeg")
    job = compute_client.submit("exif", upload)  # no worker serves exif here: the job stays queued
    (MARKERS / f"{{name}}.{{os.getpid()}}.{{job.job_id}}").write_text("waiting")
    job.result()


def test_one(compute_client, tmp_path):
    _wait(compute_client, tmp_path, "one")


def test_two(compute_client, tmp_path):
    _wait(compute_client, tmp_path, "two")


def test_three(compute_client, tmp_path):
    _wait(compute_client, tmp_path, "three")


def test_four(compute_client, tmp_path):
    _wait(compute_client, tmp_path, "four")
"""

HASH_TEST = """
def test_hash(compute_client, tmp_path):
    upload = tmp_path / "a.txt"
    upload.write_bytes(b"x")
    assert compute_client.submit("hash", upload).result().status == "completed"
"""


@pytest.fixture(scope="module")
def hash_target() -> Iterator[Target]:
    """A deployment of its own (jobs are counted): one worker, ``hash`` only."""
    dep = Deployment(workers=1, tasks=["hash"], worker_shutdown_grace=1.0)
    dep.start()
    try:
        yield Target(dep.server_url, dep.mqtt_url)
    finally:
        dep.stop()


class Run:
    """A pytest run in a process of its own (a new session, so that a signal can go to its whole group)."""

    def __init__(self, pytester: pytest.Pytester, target: Target, *args: str, cache: bool = False) -> None:
        self.markers = pytester.path / f"markers-{time.monotonic_ns()}"
        self.markers.mkdir()
        name = f"test_wait_{time.monotonic_ns()}"
        pytester.makepyfile(**{name: WAITING_TESTS.format(markers=str(self.markers))})
        self.log = pytester.path / f"{name}.log"
        argv = [sys.executable, "-m", "pytest", *QUIET, *target.args, "--cl-job-timeout", "600", f"{name}.py"]
        if not cache:
            argv[3:3] = ["-p", "no:cacheprovider"]
        with self.log.open("wb") as out:
            self.proc = pytester.popen([*argv, *args], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_for_tests(self, count: int) -> list[str]:
        """Wait until ``count`` tests (in ``count`` different processes) are inside their job wait; return the ids."""
        deadline = time.monotonic() + PATIENCE_S
        while True:
            names = [p.name for p in self.markers.iterdir()]
            if len({n.split(".")[1] for n in names}) >= count:
                return [n.split(".")[2] for n in names]
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the run did not reach {count} job waits:\n{self.output()}")
            time.sleep(0.05)

    def job_ids(self) -> list[str]:
        """Every job a test of the run announced."""
        return [p.name.split(".")[2] for p in self.markers.iterdir()]

    def finish(self) -> int:
        """Wait for the run to end; return its exit code."""
        try:
            return self.proc.wait(PATIENCE_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"the run did not end after the signal:\n{self.output()}") from None

    def output(self) -> str:
        """What the run printed (stdout and stderr)."""
        return self.log.read_text(errors="replace")


def _entries(ledger: Path) -> list[dict[str, object]]:
    if not ledger.exists():
        return []
    return [json.loads(line) for line in ledger.read_text().splitlines()]


def _outstanding(ledger: Path) -> set[str]:
    entries = _entries(ledger)
    deleted = {e["job"] for e in entries if e["op"] == "deleted"}
    return {str(e["job"]) for e in entries if e["op"] == "created" and e["job"] not in deleted}


# -- SIGTERM and SIGHUP ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_mid_wait_deletes_the_jobs(
    pytester: pytest.Pytester, hash_target: Target, mode: list[str], sig: signal.Signals
) -> None:
    """``kill <pid>`` of the pytest process (with -n 2 the controller: it passes the signal on to the workers)."""
    run = Run(pytester, hash_target, *mode)
    waiting = run.wait_for_tests(2 if mode else 1)
    assert all(hash_target.job_exists(job_id) for job_id in waiting)
    os.kill(run.proc.pid, sig)
    code = run.finish()
    out = run.output()
    assert code == pytest.ExitCode.INTERRUPTED, out
    assert run.job_ids() and not any(hash_target.job_exists(job_id) for job_id in run.job_ids()), out
    assert hash_target.job_count() == 0, out
    assert f"cl: {sig.name} received: " in out
    if mode:
        assert f"cl: {sig.name} received: passed on to the 2 xdist worker(s)" in out
    assert "ClCleanupWarning:" not in out  # no job that could not be deleted
    assert not _outstanding(pytester.path / ".cache/cl-client/ledger.jsonl"), "every deletion was recorded"


def test_sigterm_to_the_process_group_like_timeout(pytester: pytest.Pytester, hash_target: Target) -> None:
    """``timeout 600 pytest -n 2`` signals its whole process group: controller and workers each get SIGTERM."""
    run = Run(pytester, hash_target, "-n", "2")
    run.wait_for_tests(2)
    os.killpg(run.proc.pid, signal.SIGTERM)
    code = run.finish()
    out = run.output()
    assert code == pytest.ExitCode.INTERRUPTED, out
    assert not any(hash_target.job_exists(job_id) for job_id in run.job_ids()), out
    assert hash_target.job_count() == 0, out


# -- the ledger --------------------------------------------------------------------------------------------
LEDGERS = {
    "cache-dir": (True, (), ".pytest_cache/d/cl/ledger.jsonl"),
    "no-cache-provider": (False, (), ".cache/cl-client/ledger.jsonl"),  # as cl-client certify runs pytest
    "option": (False, ("--cl-ledger", "my/ledger.jsonl"), "my/ledger.jsonl"),
}


@pytest.mark.parametrize(
    ("where", "mode"),
    [("cache-dir", []), ("cache-dir", ["-n", "2"]), ("no-cache-provider", []), ("option", ["-n", "2"])],
    ids=["cache-dir-serial", "cache-dir-xdist", "no-cache-provider-serial", "option-xdist"],
)
def test_sigkill_leaves_a_ledger_and_the_next_run_deletes_its_jobs(
    pytester: pytest.Pytester, hash_target: Target, mode: list[str], where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hard stop (SIGKILL to every process; pytest-timeout's thread method and the OOM killer are alike).

    With xdist, the controller's shared folder (``pytest-cl-<pid>.<start>-…`` in the temporary folder, here a
    private one) stays too, and the next xdist run removes it.
    """
    private_tmp = pytester.path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))  # the runs in subprocesses
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))  # the next run, in this process
    cache, extra, relative = LEDGERS[where]
    ledger = pytester.path / relative
    run = Run(pytester, hash_target, *mode, *extra, cache=cache)
    run.wait_for_tests(2 if mode else 1)
    shared = sorted(private_tmp.glob(f"pytest-cl-{run.proc.pid}.*"))
    assert len(shared) == (1 if mode else 0), f"shared folders of run {run.proc.pid}: {shared}"
    os.killpg(run.proc.pid, signal.SIGKILL)  # no teardown anywhere: controller and workers die at once
    run.finish()
    assert all(folder.is_dir() for folder in shared)
    left = run.job_ids()
    assert all(hash_target.job_exists(job_id) for job_id in left)
    assert _outstanding(ledger) == set(left)
    assert {e["pid"] for e in _entries(ledger)} == {run.proc.pid}  # the run's owner, also for the workers' jobs

    pytester.makepyfile(test_next=HASH_TEST)
    args = [*QUIET, *hash_target.args, *mode, *extra, "test_next.py"]
    result = pytester.runpytest(*args) if cache else pytester.runpytest("-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [f"cl: deleted {len(left)} job(s) left by an earlier run (????-??-?? ??:??, pid {run.proc.pid})"]
    )
    result.stdout.fnmatch_lines(["*cl: nothing left behind*", "cl: deleted * job(s) left by an earlier run*"])
    assert not any(hash_target.job_exists(job_id) for job_id in left)
    assert hash_target.job_count() == 0
    assert not _outstanding(ledger)
    left_over = sorted(private_tmp.glob("pytest-cl-*"))
    assert not left_over, f"after the next run, the temporary folder still holds {left_over}"


def test_keep_jobs_keeps_leftovers_and_records_nothing(pytester: pytest.Pytester, hash_target: Target) -> None:
    ledger = pytester.path / ".cache/cl-client/ledger.jsonl"
    run = Run(pytester, hash_target)
    (left,) = run.wait_for_tests(1)
    os.killpg(run.proc.pid, signal.SIGKILL)
    run.finish()

    pytester.makepyfile(test_next=HASH_TEST)
    args = ["-p", "no:cacheprovider", *QUIET, *hash_target.args, "test_next.py"]
    kept = pytester.runpytest(*args, "--cl-keep-jobs")
    kept.assert_outcomes(passed=1)
    kept.stdout.fnmatch_lines(
        [f"cl: 1 job(s) left by an earlier run (*, pid {run.proc.pid}) are kept (--cl-keep-jobs); the next run *"]
    )
    assert hash_target.job_exists(left)
    own = re.findall(r"[0-9a-f-]{36}", kept.stdout.str().split("jobs kept (--cl-keep-jobs)")[1])
    assert own and hash_target.job_exists(own[0])
    assert _outstanding(ledger) == {left}, "a kept job is no leftover"

    again = pytester.runpytest(*args)
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines([f"cl: deleted 1 job(s) left by an earlier run (*, pid {run.proc.pid})"])
    assert not hash_target.job_exists(left)
    assert hash_target.job_exists(own[0]), "the job the --cl-keep-jobs run kept is still there"
    hash_target.delete(own[0])
    assert hash_target.job_count() == 0


def test_the_jobs_of_a_run_still_going_are_not_touched(pytester: pytest.Pytester, hash_target: Target) -> None:
    """Another run against the same deployment (someone else's) is alive: its jobs are not leftovers."""
    run = Run(pytester, hash_target)
    (waiting,) = run.wait_for_tests(1)
    pytester.makepyfile(test_next=HASH_TEST)
    result = pytester.runpytest("-p", "no:cacheprovider", *QUIET, *hash_target.args, "test_next.py")
    result.assert_outcomes(passed=1)
    assert "left by an earlier run" not in result.stdout.str()
    assert hash_target.job_exists(waiting)
    os.kill(run.proc.pid, signal.SIGTERM)
    assert run.finish() == pytest.ExitCode.INTERRUPTED
    assert hash_target.job_count() == 0


SESSION_END_TESTS = """
import time
from pathlib import Path

import pytest

MARKERS = Path({markers!r})


@pytest.fixture(scope="session")
def session_job(cl_session_client, tmp_path_factory):
    upload = tmp_path_factory.mktemp("up") / "a.jpg"
    upload.write_bytes(b"x")
    job = cl_session_client.submit("exif", upload)  # a session job: deleted when the session's clean-up runs
    yield job
    (MARKERS / f"teardown.0.{{job.job_id}}").write_text("in the session's teardown")
    while not (MARKERS / "go").exists():
        time.sleep(0.02)


def test_uses_it(session_job):
    pass
"""


def test_a_signal_during_the_session_teardown_does_not_cut_the_clean_up_short(
    pytester: pytest.Pytester, hash_target: Target
) -> None:
    markers = pytester.path / "markers-teardown"
    markers.mkdir()
    pytester.makepyfile(test_session_end=SESSION_END_TESTS.format(markers=str(markers)))
    log = pytester.path / "session-end.log"
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *QUIET, *hash_target.args, "test_session_end.py"]
    with log.open("wb") as out:
        proc = pytester.popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + PATIENCE_S
    while not any(markers.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    (job_id,) = [p.name.split(".")[2] for p in markers.iterdir()]
    os.kill(proc.pid, signal.SIGTERM)
    (markers / "go").write_text("")
    code = proc.wait(PATIENCE_S)
    out = log.read_text()
    assert code == pytest.ExitCode.INTERRUPTED, out  # the run passed, but it was stopped: never exit code 0
    assert not hash_target.job_exists(job_id), out
    assert hash_target.job_count() == 0


STOPPED_RUN_TESTS = """
import os
from pathlib import Path

MARKERS = Path({markers!r})


def test_a_done(compute_client, tmp_path):
    upload = tmp_path / "a.txt"
    upload.write_bytes(b"x")
    assert compute_client.submit("hash", upload).result().status == "completed"


def test_b_waits(compute_client, tmp_path):
    upload = tmp_path / "b.jpg"
    upload.write_bytes(b"not really a jpeg")
    job = compute_client.submit("exif", upload)  # no worker serves exif here: the job stays queued
    (MARKERS / f"b.{{os.getpid()}}.{{job.job_id}}").write_text("waiting")
    job.result()
"""


def test_a_stopped_run_still_prints_the_matrix_of_what_ran(
    pytester: pytest.Pytester, hash_target: Target, mode: list[str]
) -> None:
    """SIGTERM once one test has passed and the other waits: the summary has the matrix with the passed one."""
    markers = pytester.path / "markers-stopped"
    markers.mkdir()
    pytester.makepyfile(test_stopped=STOPPED_RUN_TESTS.format(markers=str(markers)))
    log = pytester.path / "stopped.log"
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", *QUIET, *hash_target.args, *mode]
    with log.open("wb") as out:
        proc = pytester.popen([*argv, "test_stopped.py"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + PATIENCE_S
    passed = re.compile(r"test_a_done PASSED|PASSED test_stopped\.py::test_a_done")  # serial | xdist -v lines
    while not (any(markers.iterdir()) and passed.search(log.read_text())):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    code = proc.wait(PATIENCE_S)
    out = log.read_text()
    assert code == pytest.ExitCode.INTERRUPTED, out
    assert "cl: conformance matrix" in out, f"the stopped run printed no matrix:\n{out}"
    row = re.compile(r"^\| stopped \| 1 \| 0 \| 0 \| 0 \| 1 \|", re.MULTILINE)  # 1 passed, its 1 job
    assert row.search(out), f"the matrix has no row with the passed test:\n{out}"
    if "crashed while running 'test_stopped.py::test_a_done'" in out:  # xdist held test_a_done when stopped
        assert (
            "cl: xdist lists 2 check(s) as 'worker crashed': their workers were stopped by the interrupt, not "
            "crashed. The matrix counts the finished ones (1) with their outcome and leaves out the interrupted "
            "ones (1)" in out
        ), out
    elif mode:  # both tests went to one worker: only the interrupted one is listed
        assert "cl: xdist lists 1 check(s) as 'worker crashed'" in out, out
    else:
        assert "worker crashed" not in out, out
    assert hash_target.job_count() == 0, out
