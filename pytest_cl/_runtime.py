"""The per-process runtime behind the fixtures: clients, ledger, MQTT witness, clean-up, lifecycle checks.

Created by the session fixture ``_cl_runtime`` on first use, so pytest runs that never touch the plugin's
fixtures import none of this (httpx, paho, pydantic, cl_client).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from cl_client import ComputeClient, ComputeClientError, JobResponse, WorkerUnavailableError
from pytest_cl._events import EventRecorder
from pytest_cl._jobs import (
    SESSION,
    ClientOptions,
    JobRecord,
    Ledger,
    TrackedAsyncComputeClient,
    TrackedComputeClient,
    cleanup,
    job_record_text,
)
from pytest_cl._ledgerfile import LedgerFile
from pytest_cl._lifecycle import Finding, check_job
from pytest_cl.config import Settings
from pytest_cl.deployment import DeploymentInfo


class LifecycleViolationError(AssertionError):
    """A job's REST and MQTT lifecycle disagree (the message holds the job's transcript).

    Args:
        violations: what was wrong, one line each.
        transcript: the test's jobs, MQTT events and requests.
    """

    def __init__(self, violations: Sequence[str], transcript: str) -> None:
        self.violations = list(violations)
        self.transcript = transcript
        super().__init__("cl lifecycle check failed:\n  " + "\n  ".join(self.violations) + "\n" + transcript)

    def summary(self) -> str:
        """Return the failure as the test report shows it: the violations (the transcript is a report section)."""
        return (
            f"{type(self).__name__}: cl lifecycle check failed:\n  "
            + "\n  ".join(self.violations)
            + "\n(the job records and MQTT events are in the section 'cl: jobs, MQTT events and requests')"
        )


@dataclass
class Runtime:
    """Everything the fixtures of one pytest process share.

    Attributes:
        settings: the resolved settings.
        info: the deployment under test.
        ledger: jobs and requests by test.
        recorder: the MQTT witness (None when MQTT is off or unreachable).
        missing: capabilities found missing after a full wait (later checks do not wait again).
        problems: clean-up problems of jobs cleaned at session end.
        closed: the session ended (clients closed; the ledger stays readable for the last reports).
        journal: the ledger file created jobs are appended to until their deletion is verified (None: the
            embedded deployment, or ``--cl-keep-jobs``).
    """

    settings: Settings
    info: DeploymentInfo
    journal: LedgerFile | None = None
    ledger: Ledger = field(default_factory=Ledger)
    recorder: EventRecorder | None = None
    missing: set[str] = field(default_factory=set[str])
    problems: list[str] = field(default_factory=list[str])
    closed: bool = False
    _client: TrackedComputeClient | None = None
    _janitor: ComputeClient | None = None

    def __post_init__(self) -> None:
        self.ledger.deadline = self.settings.job_timeout
        self.ledger.journal = self.journal
        if self.info.mqtt_url:
            recorder = EventRecorder(self.info.mqtt_url)
            if recorder.start(5.0):
                self.recorder = recorder
            else:
                recorder.close()

    @property
    def options(self) -> ClientOptions:
        """Connection settings of the fixture clients."""
        s = self.settings
        return ClientOptions(self.info.server_url, self.info.mqtt_url, s.token, s.auth_url, s.username, s.password)

    @property
    def client(self) -> TrackedComputeClient:
        """The process-wide sync fixture client (connected; its jobs are recorded)."""
        if self._client is None:
            self._client = TrackedComputeClient(self.ledger, self.options)
            if self._client.monitor is not None:
                self._client.monitor.wait_ready()
        return self._client

    def new_client(self, settings: Settings, *, polling_only: bool = False) -> TrackedComputeClient:
        """A sync fixture client with other settings (a fixture factory's); the caller closes it.

        With ``polling_only`` the client connects no broker and waits on jobs by polling (see
        ``TrackedComputeClient`` for how often).
        """
        options = ClientOptions(
            self.info.server_url,
            None if polling_only else self.info.mqtt_url,
            settings.token,
            settings.auth_url,
            settings.username,
            settings.password,
        )
        client = TrackedComputeClient(self.ledger, options, max_wait=settings.job_timeout)
        if client.monitor is not None:
            client.monitor.wait_ready()
        return client

    def new_async_client(self) -> TrackedAsyncComputeClient:
        """A new async fixture client (one per test: it belongs to the test's event loop)."""
        return TrackedAsyncComputeClient(self.ledger, self.options)

    @property
    def janitor(self) -> ComputeClient:
        """A client without MQTT for clean-up and diagnostics; its requests are not recorded."""
        if self._janitor is None:
            o = self.options
            self._janitor = ComputeClient(
                o.server_url,
                mqtt_url="off",
                token=o.token,
                auth_url=o.auth_url,
                username=o.username,
                password=o.password,
            )
        return self._janitor

    # -- tests -----------------------------------------------------------------------------------------
    def begin(self, nodeid: str, timeout: float | None) -> float:
        """A test that uses the fixtures starts; returns its job-wait deadline in seconds."""
        deadline = job_deadline(self.settings.job_timeout, timeout)
        self.ledger.begin(nodeid, deadline)
        return deadline

    def finish(self, nodeid: str) -> list[str]:
        """Clean up the test's jobs (or keep them); return the problems."""
        self.ledger.end(self.settings.job_timeout)
        return cleanup(self.janitor, self.ledger.jobs_of(nodeid), self.settings.keep_jobs, self.journal)

    def require(self, nodeid: str, capabilities: Sequence[str]) -> tuple[list[str], str]:
        """Wait briefly for workers; return the capabilities still missing and the message for the test."""
        wanted = [c for c in capabilities if c]
        if not wanted:
            return [], ""
        known_missing = any(c in self.missing for c in wanted)
        try:
            self.client.wait_for_workers(wanted, timeout=0.0 if known_missing else self.settings.worker_wait)
        except WorkerUnavailableError as exc:
            self.missing.update(exc.missing)
            message = (
                f"cl: no worker offers {', '.join(exc.missing)} at {self.info.server_url} "
                f"(available: {', '.join(exc.available) or 'none'}; missing-worker policy "
                f"{self.settings.policy_text})"
            )
            return list(exc.missing), message
        return [], ""

    def lifecycle(self, nodeid: str) -> list[Finding]:
        """Run the lifecycle checks on the finished jobs of a test (see ``_lifecycle``)."""
        recorder = self.recorder
        if recorder is None:
            return []
        findings: list[Finding] = []
        fix_required = self.info.is_reference or self.settings.strict
        for job in self.ledger.jobs_of(nodeid):
            if job.deleted_by_test:
                continue
            record = job.final or self._fetch(job.job_id)
            if record is None or not record.is_terminal:
                continue
            if job.final is None:
                self.ledger.on_record(record)
            seen_at = job.terminal_at or time.time()
            remaining = max(0.0, seen_at + self.settings.event_deadline - time.time())
            terminal = recorder.wait_terminal(job.job_id, remaining)
            findings += check_job(
                job.job_id,
                recorder.events(job.job_id),
                record.status,
                terminal_event=terminal,
                deadline=self.settings.event_deadline,
                fix_required=fix_required,
            )
        return findings

    def _fetch(self, job_id: str) -> JobResponse | None:
        if self.closed:
            return None
        try:
            return self.janitor.get_job(job_id)
        except ComputeClientError:
            return None

    def transcript(self, nodeid: str) -> str:
        """For a failing test: each job's record and MQTT events, then every request as a curl command."""
        out: list[str] = []
        for job in self.ledger.jobs_of(nodeid):
            out.append(self._job_text(job))
        requests = self.ledger.requests_of(nodeid)
        if requests:
            auth = any(req.auth for req in requests)
            out.append("requests (token redacted: set CL_TOKEN to replay):" if auth else "requests:")
            for req in requests:
                out.append(f"  # {req.line()}")
                out.append(f"  {req.curl()}")
        return "\n".join(out)

    def timeline(self, nodeid: str) -> list[dict[str, object]]:
        """Each job of a test with its times (seconds since the epoch): submitted, queued, processing, terminal.

        ``queued`` / ``processing`` are the first such MQTT events the witness received (None without one);
        ``terminal`` is the earlier of the witness's first terminal event and the moment a fixture client first
        saw the terminal record: the deployment's end of the job, not when a polling client next looked. For
        the report's time lines.
        """
        out: list[dict[str, object]] = []
        for job in self.ledger.jobs_of(nodeid):
            events = self.recorder.events(job.job_id) if self.recorder is not None else []
            first: dict[str, float] = {}
            for event in events:
                first.setdefault(event.event_type, event.received)
            ended = [event.received for event in events if event.is_terminal]
            if job.terminal_at is not None:
                ended.append(job.terminal_at)
            out.append(
                {
                    "id": job.job_id,
                    "task": job.task_type,
                    "submitted": round(job.submitted, 3),
                    "queued": _round3(first.get("queued")),
                    "processing": _round3(first.get("processing")),
                    "terminal": _round3(min(ended) if ended else None),
                    "status": job.final.status if job.final is not None else "",
                    "error": job.final.error_message if job.final is not None else None,
                }
            )
        return out

    def failure_detail(self, nodeid: str) -> dict[str, object]:
        """A failing test's jobs (record, MQTT events with times) and requests (curl, token as ``$CL_TOKEN``)."""
        jobs: list[dict[str, object]] = []
        for job in self.ledger.jobs_of(nodeid):
            record = job.final
            if record is None and not job.cleanup:
                record = self._fetch(job.job_id)
            events = None
            if self.recorder is not None:
                if record is not None and record.is_terminal:  # its terminal event may still be on its way
                    self.recorder.wait_terminal(job.job_id, self.settings.event_deadline)
                events = self.recorder.events(job.job_id)
            jobs.append(
                {
                    "id": job.job_id,
                    "task": job.task_type,
                    "record": job_record_text(record),
                    "events": None if events is None else [e.line(job.submitted) for e in events],
                }
            )
        requests = [{"line": r.line(), "curl": r.curl()} for r in self.ledger.requests_of(nodeid)]
        return {"jobs": jobs, "requests": requests}

    def _job_text(self, job: JobRecord) -> str:
        submitted = time.strftime("%H:%M:%S", time.localtime(job.submitted))
        lines = [f"job {job.job_id} ({job.task_type}) submitted {submitted}, clean-up: {job.cleanup or 'pending'}"]
        record = job.final
        if record is None and not job.cleanup:
            record = self._fetch(job.job_id)
        lines.append("  record: " + job_record_text(record).replace("\n", "\n  "))
        if self.recorder is None:
            lines.append("  MQTT events: (not recorded: no broker)")
        else:
            events = self.recorder.events(job.job_id)
            lines.append(f"  MQTT events ({len(events)}):")
            lines += [f"    {e.line(job.submitted)}" for e in events]
        return "\n".join(lines)

    # -- session end -------------------------------------------------------------------------------------
    def close(self) -> list[str]:
        """Clean up every job not cleaned yet (interrupted tests, session fixtures), close the clients."""
        self.closed = True
        problems: list[str] = []
        pending = self.ledger.pending()
        if pending:
            with contextlib.suppress(ComputeClientError):
                problems = cleanup(self.janitor, pending, self.settings.keep_jobs, self.journal)
        self.problems += problems
        if self._client is not None:
            self._client.close()
        if self._janitor is not None:
            self._janitor.close()
        if self.recorder is not None:
            self.recorder.close()
        return problems

    def kept_at_session_end(self) -> list[str]:
        """Ids of session-level jobs kept by ``--cl-keep-jobs``."""
        return [j.job_id for j in self.ledger.jobs_of(SESSION) if j.cleanup == "kept"]


def job_deadline(job_timeout: float, test_timeout: float | None) -> float:
    """The job-wait deadline: ``job_timeout``, but always shorter than the test's timeout.

    A reserve of ``min(5 s, half the timeout)`` is left so that clean-up still runs before pytest-timeout.
    """
    if test_timeout is None or test_timeout <= 0:
        return job_timeout
    return min(job_timeout, test_timeout - min(5.0, test_timeout / 2))


def raise_violations(findings: Sequence[Finding], transcript: str) -> None:
    """Fail the test when a finding is a violation; the message carries the transcript."""
    violations = [f.message for f in findings if f.kind == "violation"]
    if violations:
        raise LifecycleViolationError(violations, transcript)


def _round3(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
