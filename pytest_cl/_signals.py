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

__all__ = ["STOP_SIGNALS", "Stopper"]

#: The signals handled like Ctrl-C.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGHUP)

_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


@dataclass
class Stopper:
    """Handles SIGTERM and SIGHUP in one pytest process (see the module docstring).

    Args:
        workers: on the xdist controller, returns the pid of each running worker by the signals it handles
            (the signal is passed on to them instead of interrupting the controller); None elsewhere.

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
