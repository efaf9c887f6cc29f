"""The live view of a ``cl-client certify`` run: what the run is doing while pytest's own output is quiet.

``cl-client certify`` sets ``CL_CERTIFY_LIVE`` in pytest's environment; the ``cl`` plugin then registers a
``LiveView`` on the controller (the only process without xdist):

* ``tty``: a rich progress display, one bar per matrix row (checks done of the total, failures so far) and one for
  the whole run;
* ``plain`` (CI, a pipe): plain lines, no ANSI codes and no carriage returns: the totals at the start, a line when a
  row is done, one every ``PLAIN_EVERY_S`` seconds, and one at the end.

Both say when the embedded reference deployment is starting and when it is ready (and how long its start took).
pytest's progress dots and xdist's "bringing up nodes..." status lines are left out (the view replaces them);
the terminal summary (the conformance matrix) follows unchanged. The view writes to its own copy of the
terminal's file descriptor, so pytest's output capture during a check never swallows it.

Standard library at import; rich is imported when a ``tty`` view starts (it is a dependency of ``cl_client``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import PurePath
from typing import IO, TYPE_CHECKING, Protocol, cast

import pytest

from pytest_cl.report import row_for_path, row_sort_key

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from pytest_cl.deployment import DeploymentInfo

#: the environment variable ``cl-client certify`` sets: ``tty`` or ``plain``.
LIVE_VARIABLE = "CL_CERTIFY_LIVE"
MODES = ("tty", "plain")
#: a plain progress line at least this often (seconds) while checks finish.
PLAIN_EVERY_S = 30.0


class _Quiet(Protocol):
    def write_line(self, msg: str) -> None: ...
    def rewrite(self, line: str, newline: bool = False) -> None: ...


def live_mode() -> str | None:
    """The live view asked for by ``cl-client certify`` (``tty``/``plain``), or None."""
    mode = os.environ.get(LIVE_VARIABLE, "").strip().lower()
    return mode if mode in MODES else None


def _duration(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s" if seconds >= 60 else f"{seconds:.1f} s"


def _row_of_nodeid(nodeid: str) -> str:
    return row_for_path(PurePath(nodeid.split("::", 1)[0]))


class LiveView:
    """Progress of a certification run, drawn on the controller (see the module docstring).

    Args:
        config: the pytest configuration (the controller's).
        mode: ``tty`` or ``plain``.
        embedded: the run certifies the embedded reference deployment (say when it starts and is ready).
        info: returns the deployment once it is known (None before), for the "ready" line.
        row_of: the matrix row of a collected item.
        stream: where to write (default: a duplicate of the terminal's stdout descriptor, taken now).
    """

    def __init__(
        self,
        config: pytest.Config,
        mode: str,
        *,
        embedded: bool,
        info: Callable[[], DeploymentInfo | str | None],
        row_of: Callable[[pytest.Item], str],
        stream: IO[str] | None = None,
    ) -> None:
        self.config = config
        self.mode = mode
        self.embedded = embedded
        self.info = info
        self.row_of = row_of
        self.stream = stream or os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
        self.rows: dict[str, str] = {}  # node id -> row
        self.totals: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self._failed_ids: set[str] = set()
        self._finished: set[str] = set()
        self._started = time.monotonic()
        self._last_line = self._started
        self._ready = not embedded
        self._running = False
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    # -- pytest hooks ----------------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self) -> None:
        """Silence xdist's status lines ("bringing up nodes...", written twice when not in a terminal)."""
        trdist = cast(_Quiet | None, self.config.pluginmanager.get_plugin("terminaldistreporter"))
        if trdist is not None:

            def nothing(*args: object, **kwargs: object) -> None:
                del args, kwargs

            setattr(trdist, "write_line", nothing)  # noqa: B010 - an instance attribute shadows the method
            setattr(trdist, "rewrite", nothing)  # noqa: B010

    @pytest.hookimpl(wrapper=True)
    def pytest_report_teststatus(self, report: pytest.TestReport) -> Generator[None, object, object]:
        """Keep each outcome's category (the summary counts it) but not its progress letter: the view shows it."""
        result = cast(Sequence[object], (yield))
        del report
        return (result[0], "", "")

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Without xdist: the checks to run, per row."""
        if self.config.pluginmanager.has_plugin("dsession"):
            return
        self.begin({item.nodeid: self.row_of(item) for item in session.items})

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: object, ids: Sequence[str]) -> None:
        """Under xdist: the checks to run, per row (from the first worker's collection; all collect the same)."""
        del node
        if not self._running:
            self.begin({nodeid: _row_of_nodeid(nodeid) for nodeid in ids})

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Count a finished check (its teardown report, or xdist's report of a worker that went down)."""
        if not self._running:
            return
        self.check_ready()
        nodeid = report.nodeid
        row = self.rows.get(nodeid) or _row_of_nodeid(nodeid)
        if report.failed and nodeid not in self._failed_ids:
            self._failed_ids.add(nodeid)
            self.failed[row] = self.failed.get(row, 0) + 1
        if report.when in ("teardown", "???") and nodeid not in self._finished:
            self._finished.add(nodeid)
            self.done[row] = self.done.get(row, 0) + 1
            self.advance(row)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self) -> Generator[None, object, object]:
        """End the view when the checks are over (before the terminal summary), also after an interrupt."""
        try:
            return (yield)
        finally:
            self.end()

    def pytest_unconfigure(self) -> None:
        """End the view (if the run stopped before the test loop) and close the stream."""
        self.end()
        with contextlib.suppress(OSError):
            self.stream.close()

    # -- drawing ---------------------------------------------------------------------------------------
    def line(self, text: str) -> None:
        """Write one line above the progress display (``tty``) or as it is (``plain``)."""
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
            return
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(text + "\n")
            self.stream.flush()

    def begin(self, rows: dict[str, str]) -> None:
        """Start the view with the checks to run (node id -> row)."""
        self.rows = rows
        for row in rows.values():
            self.totals[row] = self.totals.get(row, 0) + 1
        ordered = sorted(self.totals, key=row_sort_key)
        total = sum(self.totals.values())
        self._running = True
        self.line(
            f"cl: {total} checks in {len(ordered)} row(s): " + ", ".join(f"{r} {self.totals[r]}" for r in ordered)
        )
        if self.embedded:
            self.line("cl: starting the embedded reference deployment (it serves the checks, then stops)...")
        if self.mode != "tty":
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        width = max([len(r) for r in ordered] + [10])
        progress = Progress(
            TextColumn(f"{{task.description:<{width}}}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failures]}"),
            TimeElapsedColumn(),
            console=Console(file=self.stream, highlight=False),
            redirect_stdout=False,
            redirect_stderr=False,
            refresh_per_second=4,
        )
        self._tasks["all checks"] = progress.add_task("all checks", total=total, failures="")
        for row in ordered:
            self._tasks[row] = progress.add_task(row, total=self.totals[row], failures="")
        progress.start()
        self._progress = progress

    def check_ready(self) -> None:
        """Say once that the embedded deployment is ready (or why it is not), as soon as that is known."""
        if self._ready:
            return
        info = self.info()
        if info is None:
            return
        self._ready = True
        if isinstance(info, str):
            self.line(f"cl: the embedded deployment did not start: {info}")
            return
        self.line(
            f"cl: embedded deployment ready in {_duration(info.startup_seconds)} ({info.num_workers} worker(s), "
            f"{len(info.capabilities)} capabilities)"
        )

    def _failures(self, count: int) -> str:
        if not count:
            return ""
        return f"[red]{count} failed[/red]" if self.mode == "tty" else f"{count} failed"

    def advance(self, row: str) -> None:
        """Show one more finished check of ``row``."""
        total_done = len(self._finished)
        total = sum(self.totals.values())
        failed = len(self._failed_ids)
        if self._progress is not None:
            self._progress.update(self._tasks["all checks"], completed=total_done, failures=self._failures(failed))
            if row in self._tasks:
                self._progress.update(
                    self._tasks[row], completed=self.done[row], failures=self._failures(self.failed.get(row, 0))
                )
            return
        now = time.monotonic()
        row_total = self.totals.get(row, 0)
        if self.done[row] == row_total:
            self._last_line = now
            self.line(
                f"cl: [{total_done}/{total}] {row}: {row_total} checks done, {self.failed.get(row, 0)} failed"
                f" ({failed} failed so far)"
            )
        elif now - self._last_line >= PLAIN_EVERY_S:
            self._last_line = now
            self.line(f"cl: [{total_done}/{total}] checks done, {failed} failed so far")

    def end(self) -> None:
        """Stop the display and write the closing line (once)."""
        if not self._running:
            return
        self._running = False
        self.check_ready()
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        total = sum(self.totals.values())
        elapsed = _duration(time.monotonic() - self._started)
        self.line(f"cl: {len(self._finished)}/{total} checks done in {elapsed}, {len(self._failed_ids)} failed")
