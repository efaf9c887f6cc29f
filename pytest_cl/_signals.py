"""SIGTERM and SIGHUP stop a run the way Ctrl-C does, so the clean-up runs (jobs deleted, deployment stopped).

CI cancellation, ``timeout 600 pytest``, ``docker stop`` and a closed terminal send SIGTERM or SIGHUP, whose
default action ends the process at once: no fixture teardown, so the jobs of the running tests stay on the
server. ``Stopper`` turns the first of them into a ``KeyboardInterrupt`` in the main thread; pytest then tears
the fixtures down (the ``cl`` fixtures delete their jobs and verify it, the embedded deployment stops) and
exits with code 2 (interrupted).

Under pytest-xdist a signal sent to the controller alone (``kill <pid>``) does not reach the workers, which run
the tests. The controller's ``Stopper`` passes it on to every worker that handles it and lets the run end the
way xdist ends it after a worker's Ctrl-C: each worker tears down and reports, then the controller stops with
code 2. When a whole process group gets the signal (``timeout`` sends it to its process group), each worker
takes its own; the copy from the controller then changes nothing.

A signal never cuts a teardown short: during a test's teardown (where its jobs are deleted; after the last
test the session fixtures' too) the interrupt is raised right after it, and during the session's end only noted
(the exit code is made 2 then). A second signal while the clean-up runs is ignored (``timeout -k``/CI send
SIGKILL later if it hangs; Ctrl-C still interrupts at once). Handlers are installed only in the main thread
and only over the default action: a signal that is ignored (``nohup``) or handled by someone else is left
alone, and the previous handlers come back when the run ends. SIGALRM (pytest-timeout's ``signal`` method) is
never touched.

Once the signal was passed on, xdist starts nothing again (``XdistHalt``): a worker that dies then (a signal
during its start-up or collection ends it before it can report) is not replaced, a worker interrupted in a test
neither, and no test is handed out any more; the controller ends the run as interrupted, with the matrix and the
clean-up of every process.

Standard library only (imported when the plugin loads).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import cast

__all__ = ["STOP_SIGNALS", "Stopper", "XdistHalt"]

#: The signals handled like Ctrl-C.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGHUP)

_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


@dataclass
class Stopper:
    """Handles SIGTERM and SIGHUP in one pytest process (see the module docstring).

    Args:
        workers: on the xdist controller, returns the pid of each running worker by the signals it handles
            (the signal is passed on to them instead of interrupting the controller); None elsewhere.
        on_forward: on the xdist controller, called once the signal was passed on (``XdistHalt.halt``: xdist
            starts nothing again).

    Attributes:
        received: the name of the first signal received (``SIGTERM``), or None.
        forwarded: the pids the signal was passed on to (controller).
        installed: the signals handled here (those whose action was the default one).
        finishing: the session is ending (its teardown, i.e. the clean-up, runs now): a signal is only noted,
            since an interrupt would cut the clean-up short.
        deferring: a test's teardown runs (its jobs are being deleted): a signal is noted and raised by
            ``check`` once the teardown is over.
        pending: a signal arrived while ``deferring`` and was not raised yet.
    """

    workers: Callable[[], Mapping[int, frozenset[str]]] | None = None
    on_forward: Callable[[], None] | None = None
    received: str | None = None
    forwarded: list[int] = field(default_factory=list[int])
    installed: tuple[str, ...] = ()
    finishing: bool = False
    deferring: bool = False
    pending: bool = False
    _previous: dict[signal.Signals, _Handler] = field(default_factory=dict[signal.Signals, _Handler], repr=False)

    def install(self) -> tuple[str, ...]:
        """Handle SIGTERM and SIGHUP where their action is the default one (main thread only); return their names."""
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return self.installed
        for sig in STOP_SIGNALS:
            if signal.getsignal(sig) is signal.SIG_DFL:
                self._previous[sig] = signal.signal(sig, self._handle)
        self.installed = tuple(sig.name for sig in self._previous)
        return self.installed

    def restore(self) -> None:
        """Put the previous handlers back (where ours is still installed)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in self._previous.items():
            if signal.getsignal(sig) == self._handle:
                signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if self.received is not None:
            return  # the clean-up of the first one is running: let it finish
        name = signal.Signals(signum).name
        self.received = name
        if self.finishing:
            return  # the teardown runs already; the exit code is made non-zero at the end
        if self.deferring:
            self.pending = True  # raised by check() once the teardown is over
            return
        if self.workers is not None:
            workers = self.workers()
            if workers and all(name in handled for handled in workers.values()):
                for pid in workers:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signum)
                        self.forwarded.append(pid)
                if self.forwarded:
                    if self.on_forward is not None:
                        self.on_forward()
                    return  # the workers clean up and report; xdist then ends the run as interrupted
        self._interrupt()

    def _interrupt(self) -> None:
        raise KeyboardInterrupt(
            f"cl: {self.received} received: the run stops like after Ctrl-C, its jobs are deleted first"
        )

    def check(self) -> None:
        """Raise the interrupt of a signal that came during a teardown (none: return)."""
        if self.pending and not self.finishing:
            self.pending = False
            self._interrupt()

    def summary(self) -> str | None:
        """One line for the terminal summary when a signal stopped the run, else None."""
        if self.received is None:
            return None
        if self.forwarded:
            return (
                f"cl: {self.received} received: passed on to the {len(self.forwarded)} xdist worker(s); each stopped "
                "like after Ctrl-C and its clean-up ran (jobs deleted and verified; a failure shows as "
                "ClCleanupWarning). Exit code 2 (interrupted)"
            )
        return (
            f"cl: {self.received} received: the run stopped like after Ctrl-C and its clean-up ran (jobs deleted and "
            "verified; a failure shows as ClCleanupWarning). Exit code 2 (interrupted)"
        )


class XdistHalt:
    """Controller plugin (pytest-xdist): once a signal was passed on to the workers, nothing is started again.

    xdist replaces a worker that went down (``--max-worker-restart``), also one stopped by an interrupt, and a
    worker that a signal ends during its start-up (before its session started) dies without reporting, so that
    without this the replacements would run the whole suite. ``halt`` makes xdist stop the run (its
    ``shouldstop``, as after a worker's Ctrl-C) and replace no worker. It uses two attributes of xdist's
    ``DSession`` (``shouldstop``, ``_clone_node``; pytest-xdist 3.x), each only where it exists.

    Args:
        stopper: the controller's ``Stopper``.
        dsession: xdist's controller plugin (``config.pluginmanager.getplugin("dsession")``).
    """

    def __init__(self, stopper: Stopper, dsession: object) -> None:
        self.stopper = stopper
        self.dsession = dsession
        self.halted = False
        self.not_replaced: list[str] = []

    def halt(self) -> None:
        """Make xdist end the run as interrupted, hand out no test and replace no worker (idempotent)."""
        ds = self.dsession
        if not getattr(ds, "shouldstop", None):
            setattr(ds, "shouldstop", f"cl: {self.stopper.received or 'a signal'} received")  # noqa: B010
        if not self.halted and hasattr(ds, "_clone_node"):
            setattr(ds, "_clone_node", self._no_replacement)  # noqa: B010
            report_line = cast(Callable[[str], None] | None, getattr(ds, "report_line", None))
            if report_line is not None:
                setattr(ds, "report_line", self._report_line(report_line))  # noqa: B010
        self.halted = True

    def _no_replacement(self, node: object) -> None:
        self.not_replaced.append(str(getattr(getattr(node, "gateway", None), "id", "worker")))

    @staticmethod
    def _report_line(original: Callable[[str], None]) -> Callable[[str], None]:
        def report_line(line: str) -> None:
            if "replacing crashed worker" not in line:  # it is not replaced: the run stops
                original(line)

        return report_line

    def pytest_testnodedown(self, node: object, error: object) -> None:
        """A worker went down after the signal was passed on: make sure xdist stops (it resets ``shouldstop``
        when its loop starts, which may come after the signal)."""
        del node, error
        if self.stopper.forwarded:
            self.halt()
