"""The conformance matrix: results of the tests that use the plugin, one row per plugin / protocol / workflows.

Per-test data travels in ``report.user_properties`` (they survive the trip from xdist workers and land in
JUnit XML), so the controller builds the same matrix with and without xdist. Session data from workers
(deployment start, clean-up at session end) arrives through ``workeroutput``.

Outcomes: passed, failed (errors included), skipped (xfails included) and **not checked**: a skip whose reason
starts with ``not checked:`` (``cl_needs_mqtt`` checks with ``--cl-mqtt off``) has its own column, so that a
check the run could not make is neither a failure of the deployment nor an ordinary skip.

Rows: ``tests/.../plugins/test_<plugin>.py`` -> ``<plugin>``; a path with a ``protocol`` part -> ``protocol``;
with a ``workflows`` part -> ``workflows``; otherwise the module name without ``test_``. The marker
``cl_row("name")`` overrides it.

Standard library and pytest only (the HTML report, ``PATH.html``, imports jinja2 through ``pytest_cl._html``
only when it is written).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import cast

import pytest

from pytest_cl._timing import from_report

__all__ = [
    "NOISE_TEXT",
    "NOT_CHECKED",
    "Comparison",
    "MatrixRow",
    "PluginFailure",
    "Results",
    "SecurityFinding",
    "SkipGroup",
    "compare",
    "load_previous",
    "percentile",
    "row_for_path",
    "row_sort_key",
    "skip_advice",
    "skip_reason",
]

PROP_ROW = "cl_row"
PROP_MISSING = "cl_missing_worker"
PROP_LACKS = "cl_lacks"
#: what a ``cl_needs_fix`` check looked for, when it ran (passed, failed or xfailed; not when it was skipped)
PROP_FIX_CHECKED = "cl_fix_checked"
PROP_PROBLEMS = "cl_cleanup_problems"
#: JSON list of ``[what, detail]``: the security findings of a ``cl_security`` check that failed
PROP_SECURITY = "cl_security"
#: what a ``cl_security`` check looked for, when it ran (passed or found something; not when it was skipped)
PROP_SECURITY_CHECKED = "cl_security_checked"
#: a plugin "fails every job" when all of at least this many of its jobs ended ``error`` with one message ...
PLUGIN_FAILURE_MIN_JOBS = 3
#: ... and at least this many checks failed
PLUGIN_FAILURE_MIN_CHECKS = 2
#: JSON list of the test's jobs with their times (submitted, queued, processing, terminal): the time lines.
PROP_TIMELINE = "cl_timeline"
#: JSON of a failing report's jobs (record, MQTT events) and requests (curl lines): the failure forensics.
PROP_FAILURE = "cl_failure"
#: Longest failure message kept per test (its end: the assertion is at the end of a traceback).
_MAX_MESSAGE = 4000
#: A row's p50 latency changed "beyond the noise" when new/old is outside this range ...
NOISE_RATIO = (0.67, 1.5)
#: ... and the absolute change is larger than this (ms).
NOISE_MS = 50.0
NOISE_TEXT = (
    f"a latency change is beyond the noise when the p50 of a row, new / old, is outside "
    f"[{NOISE_RATIO[0]}, {NOISE_RATIO[1]}] and the p50 changed by more than {NOISE_MS:g} ms"
)
#: A skip whose reason starts with this is "not checked": the run could not make the check (no MQTT, ...).
NOT_CHECKED = "not checked: "
_SPECIAL_ROWS = {"protocol": 1, "workflows": 2}


def row_for_path(path: PurePath) -> str:
    """Return the matrix row of a test file (see the module docstring)."""
    parts = [p.lower() for p in path.parts[:-1]]
    stem = path.stem
    name = stem[5:] if stem.startswith("test_") else stem.removesuffix("_test")
    if "plugins" in parts:
        return name
    if "protocol" in parts:
        return "protocol"
    if "workflows" in parts or "workflow" in parts:
        return "workflows"
    return name


def row_sort_key(name: str) -> tuple[int, str]:
    """Sort key of the matrix rows: plugin (and other) rows by name, then ``protocol``, then ``workflows``."""
    return (_SPECIAL_ROWS.get(name, 0), name)


def skip_reason(report: pytest.TestReport) -> str:
    """Return the reason of a skipped report (``""`` for other reports and for xfails)."""
    longrepr = cast(object, report.longrepr)
    if not report.skipped or hasattr(report, "wasxfail") or not isinstance(longrepr, tuple | list):
        return ""
    parts = cast(Sequence[object], longrepr)
    if len(parts) != 3:
        return ""
    return str(parts[2]).removeprefix("Skipped: ")


def percentile(values: Sequence[float], q: float) -> float | None:
    """Return the ``q`` percentile (0-100) with linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin whose every job in the run ended ``error`` with the same message (a broken install, not N defects).

    Attributes:
        task_type: the plugin.
        message: the one ``error_message`` of all its jobs.
        jobs: how many of its jobs the run made.
        checks: the node ids of the failed checks that made its jobs.
    """

    task_type: str
    message: str
    jobs: int
    checks: tuple[str, ...]

    def text(self) -> str:
        """``every hash job ended error: name 'logger' is not defined (29 checks)``."""
        return f"every {self.task_type} job ended error: {self.message} ({len(self.checks)} checks)"


@dataclass(frozen=True)
class SecurityFinding:
    """A security hole a ``cl_security`` check found.

    Attributes:
        test: the check's node id.
        what: the finding (the marker's text; the key of the expectation file's ``security:`` section).
        detail: what the deployment did, in words (the check's failure message).
    """

    test: str
    what: str
    detail: str


#: What to do about a skip or a check not made, by a pattern of its reason (the first match wins). Options are
#: named as ``cl-client certify`` takes them, with the pytest option in parentheses.
SKIP_ADVICE: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"guest ?mode", re.I),
        "run against a deployment with auth on (guest mode off), with a token: cl-client certify --token JWT, or "
        "--username/--password (pytest: --cl-token, env CL_TOKEN)",
    ),
    (
        re.compile(r"cl_destructive|--cl-allow-destructive"),
        "these checks change the deployment's settings: certify a deployment you may reconfigure with "
        "cl-client certify URL -- --cl-allow-destructive, or certify the embedded deployment (no URL)",
    ),
    (
        re.compile(r"MQTT broker|--cl-mqtt off"),
        "give the deployment's broker: cl-client certify URL --mqtt mqtt://host:1883 (pytest: --cl-mqtt)",
    ),
    (
        re.compile(r"no worker offers|missing-worker|lack of a worker", re.I),
        "start a worker that offers the capability; --cl-require-workers (or --strict) makes a missing worker a "
        "failure",
    ),
    (
        re.compile(r"not an admin|is_admin", re.I),
        "use an admin token (is_admin) to check the admin routes: cl-client certify --token JWT",
    ),
    (
        re.compile(r"private key", re.I),
        "set the variable it names to the auth service's ES256 private key (PEM) to mint tokens with chosen claims",
    ),
    (re.compile(r"no token", re.I), "pass a token: cl-client certify --token JWT (pytest: --cl-token, env CL_TOKEN)"),
    (re.compile(r"pip install|not installed", re.I), "install what the reason names, then run again"),
)
NO_ADVICE = "the reason says what the check needs; provide it and run again"


def skip_advice(reason: str) -> str:
    """Return what to do about a check skipped (or not checked) for ``reason`` (``SKIP_ADVICE`` or ``NO_ADVICE``)."""
    for pattern, advice in SKIP_ADVICE:
        if pattern.search(reason):
            return advice
    return NO_ADVICE


@dataclass(frozen=True)
class SkipGroup:
    """Checks skipped (or not checked) for one reason.

    Attributes:
        kind: ``skipped`` or ``not checked``.
        reason: the reason the checks gave.
        what_to_do: how to run them (``skip_advice``).
        tests: the node ids.
        topic: what the checks are about: their module's name when they share one (``auth``), else their row.
    """

    kind: str
    reason: str
    what_to_do: str
    tests: tuple[str, ...]
    topic: str

    @property
    def label(self) -> str:
        """``14 auth checks``."""
        return f"{len(self.tests)} {self.topic} check{'s' if len(self.tests) != 1 else ''}"

    def text(self) -> str:
        """``14 auth checks (skipped): <reason>; what to do: <advice>``."""
        return f"{self.label} ({self.kind}): {self.reason}; what to do: {self.what_to_do}"

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "kind": self.kind,
            "label": self.label,
            "count": len(self.tests),
            "reason": self.reason,
            "what_to_do": self.what_to_do,
            "tests": list(self.tests),
        }


def _topic(tests: Sequence[str], rows: Mapping[str, str]) -> str:
    modules = {PurePath(t.split("::", 1)[0]).stem.removeprefix("test_") for t in tests}
    if len(modules) == 1:
        return modules.pop()
    names = {rows.get(t, "") for t in tests}
    return names.pop() if len(names) == 1 and "" not in names else "other"


@dataclass
class MatrixRow:
    """One row of the matrix.

    Attributes:
        name: plugin name, ``protocol``, ``workflows`` or a module name.
        passed: tests that passed.
        failed: tests that failed or errored.
        skipped: tests skipped or xfailed.
        not_checked: tests the run could not check (a skip whose reason starts with ``not checked:``).
        jobs: jobs the row's tests created.
        latencies_ms: submit-to-terminal latencies of the row's jobs.
    """

    name: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    not_checked: int = 0
    jobs: int = 0
    latencies_ms: list[float] = field(default_factory=list[float])
    note: str = ""

    @property
    def label(self) -> str:
        """The row's name, with its note (``hash (every hash job ended error: …)``) when it has one."""
        return f"{self.name} ({self.note})" if self.note else self.name

    @property
    def p50(self) -> float | None:
        """Median job latency in ms."""
        return percentile(self.latencies_ms, 50)

    @property
    def p95(self) -> float | None:
        """95th percentile job latency in ms."""
        return percentile(self.latencies_ms, 95)

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "row": self.name,
            "passed": self.passed,
            "failed": self.failed,
            "skipped": self.skipped,
            "not_checked": self.not_checked,
            "jobs": self.jobs,
            "latency_p50_ms": _round(self.p50),
            "latency_p95_ms": _round(self.p95),
            **({"note": self.note} if self.note else {}),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


#: ``when`` of the report xdist makes for the test a worker held when the worker went down.
CRASH_PHASE = "???"


@dataclass
class _TestState:
    outcome: str = "passed"
    reason: str = ""
    not_checked: str = ""
    called: bool = False  # the call phase reported
    props: dict[str, str] = field(default_factory=dict[str, str])  # from the setup and call reports


@dataclass
class Results:
    """Collects the reports of the tests that use the plugin (on the controller, or the only process).

    Attributes:
        tests: node id -> (row, outcome, latencies) of every finished cl test (outcome ``passed``, ``failed``,
            ``skipped`` or ``not checked``).
        missing_workers: (node id, capabilities, outcome) for tests stopped by a missing worker.
        lacks: (node id, what the deployment lacks).
        fix_checked: what the ``cl_needs_fix`` checks that ran looked for (their markers' texts).
        not_checked: (node id, why) of the tests the run could not check.
        skips: (node id, reason) of the tests skipped with a reason (not the xfails: deployment lacks, security).
        problems: clean-up problems (tests and session).
        kept: ids of jobs kept by ``--cl-keep-jobs``.
        job_counts: node id -> number of jobs the test created.
        sessions: session data of each process (``main`` or the xdist worker id).
        timelines: node id -> the test's jobs with their times (``PROP_TIMELINE``).
        failures: node id -> ``{"message", "jobs", "requests"}`` of a failed test (``PROP_FAILURE``).
        stopped_not_crashed: (finished, interrupted) counts of the tests xdist reported as "worker crashed" in an
            interrupted run (see ``settle_unfinished``).
        security: the security findings of the ``cl_security`` checks (listed first in every output).
        security_checked: what the ``cl_security`` checks that ran looked for (their markers' texts).
        security_acknowledged: findings the expectation file's ``security:`` section acknowledges (set by the
            plugin); the others fail the run.
        started: wall-clock start of the run (set by the plugin).
        finished: wall-clock end of the run (set by the plugin).
    """

    tests: dict[str, tuple[str, str, list[float]]] = field(default_factory=dict[str, tuple[str, str, list[float]]])
    missing_workers: list[tuple[str, str, str]] = field(default_factory=list[tuple[str, str, str]])
    lacks: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])
    fix_checked: set[str] = field(default_factory=set[str])
    not_checked: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])
    skips: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])
    problems: list[str] = field(default_factory=list[str])
    kept: list[str] = field(default_factory=list[str])
    sessions: dict[str, Mapping[str, object]] = field(default_factory=dict[str, Mapping[str, object]])
    job_counts: dict[str, int] = field(default_factory=dict[str, int])
    timelines: dict[str, list[dict[str, object]]] = field(default_factory=dict[str, list[dict[str, object]]])
    failures: dict[str, dict[str, object]] = field(default_factory=dict[str, dict[str, object]])
    started: float | None = None
    finished: float | None = None
    stopped_not_crashed: tuple[int, int] = (0, 0)
    security: list[SecurityFinding] = field(default_factory=list[SecurityFinding])
    security_checked: set[str] = field(default_factory=set[str])
    security_acknowledged: frozenset[str] = frozenset()
    _state: dict[str, _TestState] = field(default_factory=dict[str, _TestState], repr=False)
    #: xdist's reports of the test a worker held when it went down (``CRASH_PHASE``)
    _crashes: dict[str, pytest.TestReport] = field(default_factory=dict[str, pytest.TestReport], repr=False)

    def add(self, report: pytest.TestReport) -> None:
        """Take one report (setup, call or teardown) of any test, or xdist's report of a worker that went down."""
        # typed setup/call/teardown, but xdist's report of a worker that went down says "???"
        if cast(str, report.when) == CRASH_PHASE:  # judged by settle_unfinished(): a crash, or an interrupt
            self._crashes[report.nodeid] = report
            return
        state = self._state.setdefault(report.nodeid, _TestState())
        if report.failed:
            state.outcome = "failed"
        elif report.skipped and state.outcome != "failed":
            state.outcome = "skipped"
            reason = skip_reason(report)
            if reason.startswith(NOT_CHECKED):
                state.not_checked = reason.removeprefix(NOT_CHECKED)
            elif reason:
                state.reason = reason
        if report.failed:
            self._add_failure(report)
        if report.when != "teardown":
            state.called = state.called or report.when == "call"
            state.props.update({str(k): str(v) for k, v in report.user_properties})
            return
        del self._state[report.nodeid]
        self._finish(report.nodeid, state, {str(k): str(v) for k, v in report.user_properties})

    def settle_unfinished(self, interrupted: bool) -> None:
        """Count the tests whose teardown never reported; call once, when the run ends.

        Under xdist each worker holds its last test until it knows the next one, so an interrupted run (Ctrl-C,
        SIGTERM) ends with tests that passed or failed but have no teardown report, and xdist reports each as
        "worker crashed". With ``interrupted``, a test whose call phase reported counts with that outcome (the
        worker did not crash: it was stopped), and a test stopped before that is left out, as in a serial run.
        Without it, a worker really went down: the test it held counts as failed, with xdist's message.

        Args:
            interrupted: the run was interrupted (its exit status is ``INTERRUPTED``).
        """
        finished = stopped = 0
        for nodeid, crash in self._crashes.items():  # xdist can report a test after its teardown report
            state = self._state.get(nodeid)
            if interrupted:
                done = nodeid in self.tests or (state is not None and state.called)
                finished, stopped = (finished + 1, stopped) if done else (finished, stopped + 1)
            elif nodeid in self.tests:
                row, _, latencies = self.tests[nodeid]
                self.tests[nodeid] = (row, "failed", latencies)
                self._add_failure(crash)
            elif state is not None:
                state.outcome = "failed"
                self._add_failure(crash)
        self._crashes.clear()
        self.stopped_not_crashed = (finished, stopped)
        for nodeid, state in list(self._state.items()):
            del self._state[nodeid]
            if interrupted and not state.called:
                self.failures.pop(nodeid, None)
                continue
            self._finish(nodeid, state, state.props)

    def stopped_not_crashed_line(self) -> str | None:
        """Why xdist's "worker crashed" failures of an interrupted run are not the deployment's (None: none)."""
        finished, stopped = self.stopped_not_crashed
        if not finished + stopped:
            return None
        return (
            f"cl: xdist lists {finished + stopped} check(s) as 'worker crashed': their workers were stopped by the "
            f"interrupt, not crashed. The matrix counts the finished ones ({finished}) with their outcome and leaves "
            f"out the interrupted ones ({stopped})"
        )

    def _finish(self, nodeid: str, state: _TestState, props: dict[str, str]) -> None:
        """Record one test with its properties (from its teardown report, else from its setup and call ones)."""
        row = props.get(PROP_ROW)
        if row is None:
            self.failures.pop(nodeid, None)
            return
        if props.get(PROP_TIMELINE):
            self.timelines[nodeid] = cast(list[dict[str, object]], json.loads(props[PROP_TIMELINE]))
        latencies = [float(x) for x in props.get("cl_latency_ms", "").split(",") if x]
        if state.outcome == "skipped" and state.not_checked:
            state.outcome = "not checked"
            self.not_checked.append((nodeid, state.not_checked))
        elif state.outcome == "skipped" and state.reason:
            self.skips.append((nodeid, state.reason))
        self.tests[nodeid] = (row, state.outcome, latencies)
        self.job_counts[nodeid] = len([x for x in props.get("cl_jobs", "").split(",") if x])
        if PROP_MISSING in props:
            self.missing_workers.append((nodeid, props[PROP_MISSING], state.outcome))
        for lack in filter(None, props.get(PROP_LACKS, "").split("\n")):
            self.lacks.append((nodeid, lack))
        if props.get(PROP_FIX_CHECKED):
            self.fix_checked.add(props[PROP_FIX_CHECKED])
        if props.get(PROP_SECURITY_CHECKED):
            self.security_checked.add(props[PROP_SECURITY_CHECKED])
        if props.get(PROP_SECURITY):
            for what, detail in cast(list[list[str]], json.loads(props[PROP_SECURITY])):
                self.security.append(SecurityFinding(nodeid, what, detail))
        self.problems.extend(filter(None, props.get(PROP_PROBLEMS, "").split("\n")))
        for item in filter(None, props.get("cl_cleanup", "").split(",")):
            job_id, _, how = item.partition(":")
            if how == "kept":
                self.kept.append(job_id)

    def _add_failure(self, report: pytest.TestReport) -> None:
        entry = self.failures.setdefault(report.nodeid, {"message": "", "jobs": [], "requests": []})
        text = report.longreprtext.strip()
        if len(text) > _MAX_MESSAGE:
            text = "…" + text[-_MAX_MESSAGE:]
        phase = f"[{report.when}] {text}" if report.when != "call" else text
        entry["message"] = "\n\n".join(filter(None, [cast(str, entry["message"]), phase]))
        for key, value in report.user_properties:
            if key == PROP_FAILURE:
                detail = cast(dict[str, object], json.loads(str(value)))
                entry["jobs"] = detail.get("jobs", [])
                entry["requests"] = detail.get("requests", [])

    def add_session(self, process: str, data: Mapping[str, object]) -> None:
        """Take the session data of one process (its clean-up problems and deployment starts)."""
        self.sessions[process] = data
        self.problems.extend(cast(list[str], data.get("problems", [])))
        self.kept.extend(cast(list[str], data.get("kept", [])))

    def all_timelines(self) -> dict[str, list[dict[str, object]]]:
        """Return every job time line of the run: each test's, and as ``<session PROCESS>`` each process's jobs.

        The latter are the jobs created outside tests (module and session fixtures, e.g. a workflow's jobs
        submitted once for its checks); the certification time counts them with the tests' jobs.
        """
        out = dict(self.timelines)
        for process, jobs in self.session_timelines().items():
            out[f"<session {process}>"] = jobs
        return out

    def session_timelines(self) -> dict[str, list[dict[str, object]]]:
        """Return, by process, the time lines of the jobs it created outside tests (processes with none left out)."""
        out: dict[str, list[dict[str, object]]] = {}
        for process, data in sorted(self.sessions.items()):
            jobs = data.get("timeline")
            if isinstance(jobs, list) and jobs:
                out[process] = cast(list[dict[str, object]], jobs)
        return out

    @property
    def starts(self) -> int:
        """How many times an embedded deployment was started in this run (all processes)."""
        return sum(cast(int, d.get("starts", 0)) for d in self.sessions.values())

    def untested_capabilities(self) -> list[tuple[str, int]]:
        """Return (capability, number of checks skipped for it) for each capability no worker offered.

        Only skips count: a missing worker that failed its checks (strict policy) is already a failure.
        """
        counts: dict[str, int] = {}
        for _, capabilities, outcome in self.missing_workers:
            if outcome != "skipped":
                continue
            for capability in filter(None, capabilities.split(",")):
                counts[capability] = counts.get(capability, 0) + 1
        return sorted(counts.items())

    @property
    def security_unacknowledged(self) -> list[SecurityFinding]:
        """The findings the expectation file does not acknowledge: each fails the run."""
        return [f for f in self.security if f.what not in self.security_acknowledged]

    def security_lines(self) -> list[str]:
        """Return the security section: one line per finding, unacknowledged ones first."""
        ordered = sorted(self.security, key=lambda f: (f.what in self.security_acknowledged, f.what, f.test))
        out: list[str] = []
        for f in ordered:
            state = "acknowledged" if f.what in self.security_acknowledged else "NOT acknowledged: fails the run"
            out.append(f"SECURITY ({state}): {f.what}")
            out.append(f"    {f.test}: {f.detail}")
        if self.security_unacknowledged:
            out.append(
                "a security finding is never a tolerated gap: fix the deployment, or acknowledge the finding in the "
                "security: section of the --cl-expect-lacks file (it stays listed first)"
            )
        return out

    def skip_groups(self) -> list[SkipGroup]:
        """Group every skipped and not-checked check by its reason, largest group first, each with what to do."""
        grouped: dict[tuple[str, str], list[str]] = {}
        for kind, items in (("skipped", self.skips), ("not checked", self.not_checked)):
            for nodeid, reason in items:
                grouped.setdefault((kind, reason), []).append(nodeid)
        rows = {nodeid: row for nodeid, (row, _, _) in self.tests.items()}
        groups = [
            SkipGroup(kind, reason, skip_advice(reason), tuple(sorted(tests)), _topic(tests, rows))
            for (kind, reason), tests in grouped.items()
        ]
        return sorted(groups, key=lambda g: (-len(g.tests), g.kind, g.reason))

    def plugin_failures(self) -> list[PluginFailure]:
        """Return the plugins whose every job ended ``error`` with one message (see ``PLUGIN_FAILURE_MIN_JOBS``)."""
        by_task: dict[str, list[tuple[str, str, str]]] = {}
        for nodeid, jobs in self.timelines.items():
            for job in jobs:
                by_task.setdefault(str(job.get("task", "")), []).append(
                    (nodeid, str(job.get("status") or ""), str(job.get("error") or ""))
                )
        out: list[PluginFailure] = []
        for task, jobs in sorted(by_task.items()):
            messages = {message for _, _, message in jobs}
            if len(jobs) < PLUGIN_FAILURE_MIN_JOBS or any(s != "error" for _, s, _ in jobs) or len(messages) != 1:
                continue
            checks = sorted({n for n, _, _ in jobs if n in self.tests and self.tests[n][1] == "failed"})
            if len(checks) >= PLUGIN_FAILURE_MIN_CHECKS:
                out.append(PluginFailure(task, messages.pop() or "(no error message)", len(jobs), tuple(checks)))
        return out

    def rows(self) -> list[MatrixRow]:
        """Build the matrix: plugin (and other) rows by name, then ``protocol``, then ``workflows``."""
        rows: dict[str, MatrixRow] = {}
        for nodeid, (row_name, outcome, latencies) in self.tests.items():
            row = rows.setdefault(row_name, MatrixRow(row_name))
            row.jobs += self.job_counts.get(nodeid, 0)
            if outcome == "passed":
                row.passed += 1
            elif outcome == "failed":
                row.failed += 1
            elif outcome == "not checked":
                row.not_checked += 1
            else:
                row.skipped += 1
            row.latencies_ms.extend(latencies)
        for failure in self.plugin_failures():
            if failure.task_type in rows:
                rows[failure.task_type].note = failure.text()
        return sorted(rows.values(), key=lambda r: row_sort_key(r.name))

    # -- output ----------------------------------------------------------------------------------------
    def as_dict(
        self,
        deployment: str,
        policy: str,
        header: Mapping[str, object] | None = None,
        comparison: Comparison | None = None,
    ) -> dict[str, object]:
        """Return the whole report as JSON-ready data (``header``: the deployment's details, see the plugin)."""
        return {
            "deployment": deployment,
            "missing_worker_policy": policy,
            "header": dict(header or {}),
            "security_findings": [
                {
                    "test": f.test,
                    "finding": f.what,
                    "detail": f.detail,
                    "acknowledged": f.what in self.security_acknowledged,
                }
                for f in sorted(self.security, key=lambda f: (f.what in self.security_acknowledged, f.what, f.test))
            ],
            "plugin_failures": [
                {
                    "task_type": p.task_type,
                    "message": p.message,
                    "jobs": p.jobs,
                    "checks": list(p.checks),
                    "text": p.text(),
                }
                for p in self.plugin_failures()
            ],
            "started": self.started,
            "finished": self.finished,
            "embedded_starts": self.starts,
            "embedded_jobs": [
                {"owner": p, "at_start": d.get("jobs_at_start"), "at_end": d.get("jobs_at_end")}
                for p, d in self.sessions.items()
                if cast(int, d.get("starts", 0))
            ],
            "matrix": [r.as_dict() for r in self.rows()],
            "tests": {
                nodeid: {
                    "row": row,
                    "outcome": outcome,
                    "latencies_ms": latencies,
                    "jobs": self.timelines.get(nodeid, []),
                }
                for nodeid, (row, outcome, latencies) in sorted(self.tests.items())
            },
            "session_jobs": self.session_timelines(),
            "failures": {n: self.failures[n] for n in sorted(self.failures) if n in self.tests},
            "comparison": comparison.as_dict() if comparison is not None else None,
            "certification_time": from_report(self.all_timelines(), header, self.started, self.finished).as_dict(),
            "skipped_for_missing_worker": [
                {"test": n, "capabilities": c, "outcome": o} for n, c, o in self.missing_workers
            ],
            "deployment_lacks": [{"test": n, "lack": lack} for n, lack in self.lacks],
            "not_checked": [{"test": n, "reason": reason} for n, reason in sorted(self.not_checked)],
            "skip_groups": [g.as_dict() for g in self.skip_groups()],
            "cleanup_problems": list(self.problems),
            "kept_jobs": list(self.kept),
        }

    def matrix_lines(self) -> list[str]:
        """Return the matrix as a Markdown table (also used in the terminal)."""
        lines = [
            "| row | passed | failed | skipped | not checked | jobs | p50 ms | p95 ms |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in self.rows():
            lines.append(
                f"| {r.label} | {r.passed} | {r.failed} | {r.skipped} | {r.not_checked} | {r.jobs} | {_ms(r.p50)} "
                f"| {_ms(r.p95)} |"
            )
        return lines

    def markdown(self, deployment: str, policy: str, comparison: Comparison | None = None) -> str:
        """Return the report as a Markdown document."""
        out = [
            "# CL conformance report",
            "",
            f"Deployment: {deployment}",
            "",
            f"Missing-worker policy: {policy}",
            "",
        ]
        if self.security:
            out += [f"## Security findings ({len(self.security)})", ""]
            out += [f"* {line}" for line in self.security_lines()]
            out.append("")
        failures = self.plugin_failures()
        if failures:
            out += ["## Plugins that failed every job", ""]
            out += [f"* {p.text()}" for p in failures]
            out.append("")
        out += self.matrix_lines()
        if comparison is not None:
            out += ["", f"## Compared with {comparison.source}", ""]
            out += [f"* {line}" for line in comparison.lines()]
        failed = [n for n in sorted(self.failures) if n in self.tests]
        if failed:
            out += ["", "## Failed checks", ""]
            for nodeid in failed:
                out += [f"### `{nodeid}`", "", "```", str(self.failures[nodeid]["message"]), "```", ""]
        if self.missing_workers:
            out += ["", "## Skipped for lack of a worker", ""]
            out += [f"* `{n}`: {c} ({o})" for n, c, o in self.missing_workers]
        if self.lacks:
            out += ["", "## Deployment lacks", ""]
            out += [f"* `{n}`: {lack}" for n, lack in self.lacks]
        groups = self.skip_groups()
        if groups:
            out += ["", "## Skipped and not checked, by reason", ""]
            for g in groups:
                out.append(f"* **{g.label}** ({g.kind}): {g.reason}")
                out.append(f"  * what to do: {g.what_to_do}")
                out.append(f"  * checks: {', '.join(f'`{t}`' for t in g.tests)}")
        if self.not_checked:
            out += ["", "## Not checked", ""]
            out += [f"* `{n}`: {reason}" for n, reason in sorted(self.not_checked)]
        if self.problems:
            out += ["", "## Clean-up problems", ""]
            out += [f"* {p}" for p in self.problems]
        if self.kept:
            out += ["", "## Kept jobs", ""]
            out += [f"* `{j}`" for j in self.kept]
        return "\n".join(out) + "\n"

    def write(
        self,
        path: str | Path,
        deployment: str,
        policy: str,
        header: Mapping[str, object] | None = None,
        comparison: Comparison | None = None,
        redact: Sequence[str] = (),
    ) -> tuple[Path, Path]:
        """Write the report; return the two paths written.

        ``PATH.html``: the self-contained HTML report and, beside it, ``PATH`` with suffix ``.json`` (the data,
        for a later ``--cl-compare``). Any other suffix: ``path`` (JSON) and ``path`` with suffix ``.md``
        (Markdown). Every string in ``redact`` (the token) is replaced by ``$CL_TOKEN``.
        """
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = self.as_dict(deployment, policy, header, comparison)

        def clean(text: str) -> str:
            for secret in redact:
                if secret:
                    text = text.replace(secret, "$CL_TOKEN")
            return text

        if target.suffix.lower() == ".html":
            from pytest_cl._html import render  # jinja2 only now

            json_path = target.with_suffix(".json")
            json_path.write_text(clean(json.dumps(data, indent=2)) + "\n")
            target.write_text(clean(render(data)), encoding="utf-8")
            return target, json_path
        md_path = target.with_suffix(".md") if target.suffix != ".md" else target.with_suffix(".md.md")
        target.write_text(clean(json.dumps(data, indent=2)) + "\n")
        md_path.write_text(clean(self.markdown(deployment, policy, comparison)))
        return target, md_path


@dataclass(frozen=True)
class LatencyChange:
    """A row whose p50 latency changed beyond the noise (``NOISE_TEXT``)."""

    row: str
    old_p50: float
    new_p50: float

    @property
    def ratio(self) -> float:
        """Return new / old."""
        return self.new_p50 / self.old_p50 if self.old_p50 else math.inf

    def text(self) -> str:
        """``slower: p50 120 -> 480 ms (x4.00)``."""
        word = "slower" if self.new_p50 > self.old_p50 else "faster"
        return f"{word}: p50 {self.old_p50:.0f} -> {self.new_p50:.0f} ms (x{self.ratio:.2f})"


@dataclass
class Comparison:
    """The comparison of this run with an earlier ``--cl-report`` JSON (``--cl-compare``).

    Attributes:
        source: the earlier report's path.
        newly_failing: (node id, row) of checks that fail now and did not before.
        newly_passing: (node id, row) of checks that pass now and failed before.
        latency: rows whose p50 changed beyond the noise.
    """

    source: str
    newly_failing: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])
    newly_passing: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])
    latency: list[LatencyChange] = field(default_factory=list[LatencyChange])

    def row_marks(self) -> dict[str, list[str]]:
        """Row -> short marks (``2 newly failing``, ``slower: ...``)."""
        marks: dict[str, list[str]] = {}
        for label, items in (("newly failing", self.newly_failing), ("newly passing", self.newly_passing)):
            counts: dict[str, int] = {}
            for _, row in items:
                counts[row] = counts.get(row, 0) + 1
            for row, n in counts.items():
                marks.setdefault(row, []).append(f"{n} {label}")
        for change in self.latency:
            marks.setdefault(change.row, []).append(change.text())
        return marks

    def lines(self) -> list[str]:
        """Plain lines: what changed, and the noise rule."""
        out = [f"newly failing: {n} ({row})" for n, row in self.newly_failing]
        out += [f"newly passing: {n} ({row})" for n, row in self.newly_passing]
        out += [f"latency {c.row}: {c.text()}" for c in self.latency]
        if not out:
            out.append("no check changed its outcome and no latency changed beyond the noise")
        out.append(f"noise: {NOISE_TEXT}")
        return out

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "compared_with": self.source,
            "noise": NOISE_TEXT,
            "newly_failing": [{"test": n, "row": r} for n, r in self.newly_failing],
            "newly_passing": [{"test": n, "row": r} for n, r in self.newly_passing],
            "latency_changes": [
                {"row": c.row, "old_p50_ms": round(c.old_p50, 1), "new_p50_ms": round(c.new_p50, 1)}
                for c in self.latency
            ],
            "row_marks": self.row_marks(),
        }


def load_previous(path: str | Path) -> dict[str, object]:
    """Read an earlier ``--cl-report`` JSON; ``ValueError`` with a clear message when it is not one."""
    try:
        data = cast(object, json.loads(Path(path).read_text()))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot be read as an earlier --cl-report JSON ({exc})") from None
    if not isinstance(data, dict) or "tests" not in data or "matrix" not in data:
        raise ValueError(f"{path}: not a --cl-report JSON (no 'tests' and 'matrix')")
    return cast(dict[str, object], data)


def beyond_noise(old_p50: float, new_p50: float) -> bool:
    """Return True when the p50 change is beyond the noise (``NOISE_TEXT``)."""
    if abs(new_p50 - old_p50) <= NOISE_MS:
        return False
    if old_p50 <= 0:
        return True
    ratio = new_p50 / old_p50
    return not NOISE_RATIO[0] <= ratio <= NOISE_RATIO[1]


def compare(old: Mapping[str, object], results: Results, source: str) -> Comparison:
    """Compare this run's results with an earlier report (checks present in both; rows with a p50 in both)."""
    result = Comparison(source)
    old_tests = cast(dict[str, dict[str, object]], old.get("tests") or {})
    for nodeid, (row, outcome, _) in sorted(results.tests.items()):
        before = old_tests.get(nodeid)
        if before is None:
            continue
        was = before.get("outcome")
        if outcome == "failed" and was != "failed":
            result.newly_failing.append((nodeid, row))
        elif outcome == "passed" and was == "failed":
            result.newly_passing.append((nodeid, row))
    old_p50 = {
        str(r.get("row")): r.get("latency_p50_ms") for r in cast(list[dict[str, object]], old.get("matrix") or [])
    }
    for row in results.rows():
        before = old_p50.get(row.name)
        now = row.p50
        if isinstance(before, int | float) and now is not None and beyond_noise(float(before), now):
            result.latency.append(LatencyChange(row.name, float(before), now))
    return result


def terminal_sections(
    results: Results,
    deployment: str,
    policy: str,
    comparison: Comparison | None = None,
    extra_head: Sequence[str] = (),
) -> Iterable[tuple[str, list[str]]]:
    """Return the terminal summary: (title, lines) per section, empty sections left out.

    ``extra_head``: more lines of the "deployment under test" section (which upstream it looks like).
    """
    starts = results.starts
    head = [f"deployment: {deployment}", *extra_head, f"missing-worker policy: {policy}"]
    if starts:
        owners = {p: d for p, d in results.sessions.items() if cast(int, d.get("starts", 0))}
        head.append(f"embedded deployment started {starts} time(s) (by {', '.join(owners)})")
        for data in owners.values():
            head.append(
                f"jobs on the embedded deployment: {data.get('jobs_at_start')} at start, "
                f"{data.get('jobs_at_end')} at the end"
            )
    yield "cl: deployment under test", head
    if results.missing_workers:
        yield (
            f"cl: tests stopped for lack of a worker ({len(results.missing_workers)})",
            [f"{n}: {c} ({o})" for n, c, o in results.missing_workers],
        )
    if results.lacks:
        yield f"cl: deployment lacks ({len(results.lacks)})", [f"{n}: {lack}" for n, lack in results.lacks]
    groups = results.skip_groups()
    if groups:
        lines: list[str] = []
        for g in groups:
            lines += [f"{g.label} ({g.kind}): {g.reason}", f"    what to do: {g.what_to_do}"]
        yield f"cl: skipped and not checked, by reason ({sum(len(g.tests) for g in groups)})", lines
    if results.not_checked:
        yield (
            f"cl: not checked ({len(results.not_checked)})",
            [f"{n}: {reason}" for n, reason in sorted(results.not_checked)],
        )
    if results.problems:
        yield f"cl: clean-up problems ({len(results.problems)})", list(results.problems)
    if results.kept:
        yield f"cl: jobs kept (--cl-keep-jobs): {len(results.kept)}", list(results.kept)
    if results.tests:
        yield "cl: conformance matrix", results.matrix_lines()
    if comparison is not None:
        yield f"cl: compared with {comparison.source}", comparison.lines()
