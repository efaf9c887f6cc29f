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

Standard library and pytest only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import cast

import pytest

__all__ = ["NOT_CHECKED", "MatrixRow", "Results", "percentile", "row_for_path", "row_sort_key", "skip_reason"]

PROP_ROW = "cl_row"
PROP_MISSING = "cl_missing_worker"
PROP_LACKS = "cl_lacks"
PROP_PROBLEMS = "cl_cleanup_problems"
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
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


@dataclass
class _TestState:
    outcome: str = "passed"
    reason: str = ""
    not_checked: str = ""


@dataclass
class Results:
    """Collects the reports of the tests that use the plugin (on the controller, or the only process).

    Attributes:
        tests: node id -> (row, outcome, latencies) of every finished cl test (outcome ``passed``, ``failed``,
            ``skipped`` or ``not checked``).
        missing_workers: (node id, capabilities, outcome) for tests stopped by a missing worker.
        lacks: (node id, what the deployment lacks).
        not_checked: (node id, why) of the tests the run could not check.
        problems: clean-up problems (tests and session).
        kept: ids of jobs kept by ``--cl-keep-jobs``.
        job_counts: node id -> number of jobs the test created.
        sessions: session data of each process (``main`` or the xdist worker id).
    """

    tests: dict[str, tuple[str, str, list[float]]] = field(default_factory=dict[str, tuple[str, str, list[float]]])
    missing_workers: list[tuple[str, str, str]] = field(default_factory=list[tuple[str, str, str]])
    lacks: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])
    not_checked: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])
    problems: list[str] = field(default_factory=list[str])
    kept: list[str] = field(default_factory=list[str])
    sessions: dict[str, Mapping[str, object]] = field(default_factory=dict[str, Mapping[str, object]])
    job_counts: dict[str, int] = field(default_factory=dict[str, int])
    _state: dict[str, _TestState] = field(default_factory=dict[str, _TestState], repr=False)

    def add(self, report: pytest.TestReport) -> None:
        """Take one report (setup, call or teardown) of any test."""
        state = self._state.setdefault(report.nodeid, _TestState())
        if report.failed:
            state.outcome = "failed"
        elif report.skipped and state.outcome != "failed":
            state.outcome = "skipped"
            reason = skip_reason(report)
            if reason.startswith(NOT_CHECKED):
                state.not_checked = reason.removeprefix(NOT_CHECKED)
        if report.when != "teardown":
            return
        del self._state[report.nodeid]
        props = {str(k): str(v) for k, v in report.user_properties}
        row = props.get(PROP_ROW)
        if row is None:
            return
        latencies = [float(x) for x in props.get("cl_latency_ms", "").split(",") if x]
        if state.outcome == "skipped" and state.not_checked:
            state.outcome = "not checked"
            self.not_checked.append((report.nodeid, state.not_checked))
        self.tests[report.nodeid] = (row, state.outcome, latencies)
        self.job_counts[report.nodeid] = len([x for x in props.get("cl_jobs", "").split(",") if x])
        if PROP_MISSING in props:
            self.missing_workers.append((report.nodeid, props[PROP_MISSING], state.outcome))
        for lack in filter(None, props.get(PROP_LACKS, "").split("\n")):
            self.lacks.append((report.nodeid, lack))
        self.problems.extend(filter(None, props.get(PROP_PROBLEMS, "").split("\n")))
        for item in filter(None, props.get("cl_cleanup", "").split(",")):
            job_id, _, how = item.partition(":")
            if how == "kept":
                self.kept.append(job_id)

    def add_session(self, process: str, data: Mapping[str, object]) -> None:
        """Take the session data of one process (its clean-up problems and deployment starts)."""
        self.sessions[process] = data
        self.problems.extend(cast(list[str], data.get("problems", [])))
        self.kept.extend(cast(list[str], data.get("kept", [])))

    @property
    def starts(self) -> int:
        """How many times an embedded deployment was started in this run (all processes)."""
        return sum(cast(int, d.get("starts", 0)) for d in self.sessions.values())

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
        return sorted(rows.values(), key=lambda r: row_sort_key(r.name))

    # -- output ----------------------------------------------------------------------------------------
    def as_dict(self, deployment: str, policy: str) -> dict[str, object]:
        """Return the whole report as JSON-ready data."""
        return {
            "deployment": deployment,
            "missing_worker_policy": policy,
            "embedded_starts": self.starts,
            "embedded_jobs": [
                {"owner": p, "at_start": d.get("jobs_at_start"), "at_end": d.get("jobs_at_end")}
                for p, d in self.sessions.items()
                if cast(int, d.get("starts", 0))
            ],
            "matrix": [r.as_dict() for r in self.rows()],
            "tests": {
                nodeid: {"row": row, "outcome": outcome, "latencies_ms": latencies}
                for nodeid, (row, outcome, latencies) in sorted(self.tests.items())
            },
            "skipped_for_missing_worker": [
                {"test": n, "capabilities": c, "outcome": o} for n, c, o in self.missing_workers
            ],
            "deployment_lacks": [{"test": n, "lack": lack} for n, lack in self.lacks],
            "not_checked": [{"test": n, "reason": reason} for n, reason in sorted(self.not_checked)],
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
                f"| {r.name} | {r.passed} | {r.failed} | {r.skipped} | {r.not_checked} | {r.jobs} | {_ms(r.p50)} "
                f"| {_ms(r.p95)} |"
            )
        return lines

    def markdown(self, deployment: str, policy: str) -> str:
        """Return the report as a Markdown document."""
        out = [
            "# CL conformance report",
            "",
            f"Deployment: {deployment}",
            "",
            f"Missing-worker policy: {policy}",
            "",
            *self.matrix_lines(),
        ]
        if self.missing_workers:
            out += ["", "## Skipped for lack of a worker", ""]
            out += [f"* `{n}`: {c} ({o})" for n, c, o in self.missing_workers]
        if self.lacks:
            out += ["", "## Deployment lacks", ""]
            out += [f"* `{n}`: {lack}" for n, lack in self.lacks]
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

    def write(self, path: str | Path, deployment: str, policy: str) -> tuple[Path, Path]:
        """Write ``path`` (JSON) and ``path`` with suffix ``.md`` (Markdown); return both paths."""
        json_path = Path(path)
        md_path = json_path.with_suffix(".md") if json_path.suffix != ".md" else json_path.with_suffix(".md.md")
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(self.as_dict(deployment, policy), indent=2) + "\n")
        md_path.write_text(self.markdown(deployment, policy))
        return json_path, md_path


def terminal_sections(results: Results, deployment: str, policy: str) -> Iterable[tuple[str, list[str]]]:
    """Return the terminal summary: (title, lines) per section, empty sections left out."""
    starts = results.starts
    head = [f"deployment: {deployment}", f"missing-worker policy: {policy}"]
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
