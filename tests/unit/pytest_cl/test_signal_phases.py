"""SIGTERM and SIGHUP stop a run at every phase: start-up, collection, running, teardown (pytest and certify).

Each run is a real pytest process (``-n 2``: a controller and two xdist workers, or one serial process) against
the session deployment. Its conftest holds every process at the phase under test: it writes a marker file
``<phase>.<pid>`` and sleeps until the signal interrupts it (no sleeps on this side: the signal is sent once the
markers exist). Every process also writes ``process.<pid>`` when it starts and ``test.<pid>.<name>`` when a test
starts, so a test can tell whether anything was started after the signal (a replacement worker, a test).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.unit.pytest_cl.conftest import QUIET, Target

#: how long a run may take to reach the phase, and to end after a signal (generous: the machine is shared)
PATIENCE_S = 180.0

PHASE_PLUGIN = """
import os
import time
from pathlib import Path

import pytest

MARKERS = Path({markers!r})
PHASE = {phase!r}
XDIST = {xdist!r}


def _hold(phase, stopper=None):
    if phase != PHASE or (XDIST and "PYTEST_XDIST_WORKER" not in os.environ):
        return  # under xdist only the workers are held (the controller goes on and passes the signal on)
    (MARKERS / f"{{phase}}.{{os.getpid()}}").write_text("held")
    while not (stopper is not None and stopper.received):  # until the signal interrupts it (a teardown is not
        time.sleep(0.05)  # cut short: it goes on once this process's handler noted the signal)


def pytest_configure(config):
    (MARKERS / f"process.{{os.getpid()}}").write_text("started")


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session):
    _hold("start-up")


def pytest_collection_modifyitems(items):
    _hold("collection")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    (MARKERS / f"test.{{os.getpid()}}.{{abs(hash(item.nodeid))}}").write_text(item.nodeid)


def pytest_runtest_call(item):
    _hold("running")


@pytest.fixture(scope="session", autouse=True)
def _held_teardown(request):
    yield
    from pytest_cl._keys import STATE

    _hold("teardown", request.config.stash[STATE].stopper)
"""

PHASE_TESTS = """
def test_a():
    pass


def test_b():
    pass


def test_c():
    pass


def test_d():
    pass
"""

PHASES = ["start-up", "collection", "running", "teardown"]


class PhaseRun:
    """A pytest (or ``cl-client certify``) run in a new session whose processes stop at ``phase``."""

    def __init__(self, pytester: pytest.Pytester, target: Target, phase: str, mode: list[str], certify: bool) -> None:
        self.markers = pytester.path / "markers"
        self.markers.mkdir()
        plugin = f"phase_hold_{time.monotonic_ns()}"
        pytester.makepyfile(**{plugin: PHASE_PLUGIN.format(markers=str(self.markers), phase=phase, xdist=bool(mode))})
        pytester.makepyfile(test_phase=PHASE_TESTS)
        self.log = pytester.path / "run.log"
        # not this test's own xdist variables: a controller that inherits PYTEST_XDIST_WORKER takes itself for a
        # worker (the phase plugin then held it at start-up, and no worker was ever started)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST_", "PYTEST_CURRENT_TEST"))}
        env["PYTHONPATH"] = os.pathsep.join([str(pytester.path), os.environ.get("PYTHONPATH", "")])
        if certify:  # the packaged conformance suite, with the plugin that holds its processes
            argv = [sys.executable, "-m", "cl_client", "certify", cl_target_url(target), "--mqtt", target.mqtt_url]
            argv += [*mode, "--", "-p", plugin]
        else:
            argv = [sys.executable, "-m", "pytest", "-p", plugin, "-p", "no:cacheprovider", *QUIET, *target.args]
            argv += [*mode, "test_phase.py"]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=pytester.path
            )

    def names(self, kind: str) -> list[str]:
        """The marker names of one kind (``process``, ``test``, a phase)."""
        return sorted(p.name for p in self.markers.iterdir() if p.name.startswith(f"{kind}."))

    def wait_for(self, kind: str, count: int) -> None:
        """Wait until ``count`` processes are held at the phase ``kind``."""
        deadline = time.monotonic() + PATIENCE_S
        while len(self.names(kind)) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"the run did not reach {count} x {kind}:\n{self.output()}")
            time.sleep(0.05)

    def finish(self) -> int:
        """Wait for the run to end by itself; return its exit code."""
        try:
            return self.proc.wait(PATIENCE_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the run did not end after the signal:\n{self.output()}") from None

    def kill(self) -> None:
        """End every process of the run (its session)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def output(self) -> str:
        """What the run printed."""
        return self.log.read_text(errors="replace")


@pytest.mark.parametrize(
    ("phase", "sig"),
    [*((phase, signal.SIGTERM) for phase in PHASES), ("start-up", signal.SIGHUP), ("collection", signal.SIGHUP)],
    ids=[*(f"{phase}-SIGTERM" for phase in PHASES), "start-up-SIGHUP", "collection-SIGHUP"],
)
def test_a_signal_stops_an_xdist_run_at_every_phase(
    pytester: pytest.Pytester, cl_target: Target, phase: str, sig: signal.Signals
) -> None:
    """``kill -TERM <controller>`` once both workers are held at ``phase``: the run stops, nothing starts again."""
    run = PhaseRun(pytester, cl_target, phase, ["-n", "2"], certify=False)
    run.wait_for(phase, 2)
    tests_before = run.names("test")
    os.kill(run.proc.pid, sig)
    code = run.finish()
    out = run.output()
    assert code == pytest.ExitCode.INTERRUPTED, out
    assert len(run.names("process")) == 3, f"a process was started after the signal (a replacement worker):\n{out}"
    assert run.names("test") == tests_before, f"a test was started after the signal:\n{out}"
    assert f"cl: {sig.name} received: passed on to the 2 xdist worker(s)" in out, out
    assert "replacing crashed worker" not in out, out


@pytest.mark.parametrize("phase", PHASES)
def test_a_signal_stops_a_serial_run_at_every_phase(pytester: pytest.Pytester, cl_target: Target, phase: str) -> None:
    run = PhaseRun(pytester, cl_target, phase, [], certify=False)
    run.wait_for(phase, 1)
    tests_before = run.names("test")
    os.kill(run.proc.pid, signal.SIGTERM)
    code = run.finish()
    out = run.output()
    assert code == pytest.ExitCode.INTERRUPTED, out
    assert run.names("test") == tests_before, out
    assert "cl: SIGTERM received: " in out, out


@pytest.mark.parametrize("phase", PHASES)
def test_sigterm_stops_certify_at_every_phase(pytester: pytest.Pytester, cl_target: Target, phase: str) -> None:
    """``cl-client certify`` relays SIGTERM to its pytest, whose controller passes it on to the workers."""
    run = PhaseRun(pytester, cl_target, phase, ["-n", "2"], certify=True)
    run.wait_for(phase, 2)
    tests_before = run.names("test")
    os.kill(run.proc.pid, signal.SIGTERM)
    code = run.finish()
    out = run.output()
    assert code == pytest.ExitCode.INTERRUPTED, out
    assert len(run.names("process")) == 3, f"a process was started after the signal:\n{out}"
    assert run.names("test") == tests_before, out
    assert "cl: SIGTERM received: passed on to the 2 xdist worker(s)" in out, out


def cl_target_url(target: Target) -> str:
    """The URL argument of ``cl-client certify``."""
    return target.server_url
