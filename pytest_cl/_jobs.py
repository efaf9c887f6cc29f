"""The job ledger: every request and every job made through the plugin's clients, by test.

The fixture clients send their HTTP through a recording transport, so the ledger sees every
``POST /jobs/{task_type}`` however it was made (``submit``, a plugin client such as ``client.hash``, ...),
every ``GET`` that saw a terminal state, and every ``DELETE``. Their clients also clamp job waits to the
test's deadline (shorter than its pytest-timeout). At teardown the jobs of the test are deleted and the
deletion is verified (``GET`` must answer 404).
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast

import httpx

from cl_client import (
    AsyncComputeClient,
    ComputeClient,
    ComputeClientConfig,
    ComputeClientError,
    JobNotFoundError,
    JobResponse,
)
from pytest_cl._ledgerfile import LedgerFile

SESSION = "<session>"
_MAX_REQUESTS_PER_TEST = 200
_JOB_ROUTE = re.compile(r"/jobs/([^/]+)$")


@dataclass
class RequestRecord:
    """One HTTP request made through a fixture client.

    Attributes:
        nodeid: the test that was running.
        started: wall-clock start (seconds since the epoch).
        method: the HTTP method.
        url: the full URL.
        status: the response status (None when the request failed).
        elapsed_ms: duration.
        fields: form fields of a multipart request.
        file: ``(part name, filename, local path)`` of the uploaded file, if any.
        error: the transport error, if any.
        auth: the request carried an ``Authorization`` header (its value is never kept).
    """

    nodeid: str
    started: float
    method: str
    url: str
    status: int | None
    elapsed_ms: float
    fields: tuple[tuple[str, str], ...] = ()
    file: tuple[str, str, str] | None = None
    error: str | None = None
    auth: bool = False

    def curl(self) -> str:
        """A curl command reproducing the request.

        A request that carried a token gets ``-H "Authorization: Bearer $CL_TOKEN"``: in double quotes, so the
        shell expands the variable (the token itself is never printed); one without gets no such header.
        """
        parts = ["curl", "-sS", "-X", self.method, shlex.quote(self.url)]
        if self.auth:
            parts += ["-H", '"Authorization: Bearer $CL_TOKEN"']
        for name, value in self.fields:
            parts += ["-F", shlex.quote(f"{name}={value}")]
        if self.file is not None:
            name, filename, path = self.file
            parts += ["-F", shlex.quote(f"{name}=@{path};filename={filename}")]
        return " ".join(parts)

    def line(self) -> str:
        """``METHOD URL -> STATUS (ms)`` for transcripts."""
        outcome = str(self.status) if self.status is not None else f"failed: {self.error}"
        return f"{self.method} {self.url} -> {outcome} ({self.elapsed_ms:.1f} ms)"


@dataclass
class JobRecord:
    """A job created through a fixture client.

    Attributes:
        job_id: the server's id.
        task_type: the plugin.
        nodeid: the test that created it (``<session>`` outside tests).
        submitted: wall-clock time the POST was sent.
        created: wall-clock time the POST returned.
        final: the terminal record, once a GET or a wait saw it.
        terminal_at: wall-clock time the terminal record was first seen.
        deleted_by_test: the test deleted it itself.
        cleanup: ``""`` (not yet), ``deleted``, ``gone`` (deleted before), ``kept`` or ``failed: ...``.
    """

    job_id: str
    task_type: str
    nodeid: str
    submitted: float
    created: float
    final: JobResponse | None = None
    terminal_at: float | None = None
    deleted_by_test: bool = False
    cleanup: str = ""

    @property
    def latency_ms(self) -> float | None:
        """Submit to terminal state (as first seen by a fixture client), in milliseconds."""
        if self.terminal_at is None:
            return None
        return (self.terminal_at - self.submitted) * 1000


@dataclass
class Ledger:
    """Jobs and requests by test; thread-safe (fetch pools and user threads report here).

    Attributes:
        current: the node id of the running test (``<session>`` between tests).
        deadline: the job-wait limit of the running test, in seconds.
        journal: the ledger file each created job is appended to (None: embedded deployment, --cl-keep-jobs).
    """

    current: str = SESSION
    deadline: float = 120.0
    journal: LedgerFile | None = None
    jobs: dict[str, JobRecord] = field(default_factory=dict[str, JobRecord])
    requests: dict[str, list[RequestRecord]] = field(default_factory=dict[str, list[RequestRecord]])
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def begin(self, nodeid: str, deadline: float) -> None:
        """A test starts: attribute what follows to it."""
        with self._lock:
            self.current = nodeid
            self.deadline = deadline

    def end(self, session_deadline: float) -> None:
        """The test ended: attribute what follows to the session."""
        with self._lock:
            self.current = SESSION
            self.deadline = session_deadline

    def wait_limit(self, timeout: float | None) -> float:
        """The wait to use: the caller's timeout, never longer than the test's deadline."""
        return self.deadline if timeout is None else min(timeout, self.deadline)

    def jobs_of(self, nodeid: str) -> list[JobRecord]:
        """The jobs a test created, in creation order."""
        with self._lock:
            return [j for j in self.jobs.values() if j.nodeid == nodeid]

    def requests_of(self, nodeid: str) -> list[RequestRecord]:
        """The requests made during a test."""
        with self._lock:
            return list(self.requests.get(nodeid, ()))

    def pending(self) -> list[JobRecord]:
        """Jobs not cleaned up yet (any test)."""
        with self._lock:
            return [j for j in self.jobs.values() if not j.cleanup]

    # -- reports from the transports and the clients ---------------------------------------------------
    def on_request(self, record: RequestRecord) -> None:
        """Keep a request (bounded per test)."""
        with self._lock:
            bucket = self.requests.setdefault(record.nodeid, [])
            if len(bucket) < _MAX_REQUESTS_PER_TEST:
                bucket.append(record)

    def on_created(self, job_id: str, task_type: str, nodeid: str, submitted: float) -> None:
        """A POST created a job: recorded, and appended to the ledger file before anything else can happen."""
        with self._lock:
            if job_id in self.jobs:
                return
            self.jobs[job_id] = JobRecord(job_id, task_type, nodeid, submitted, time.time())
        if self.journal is not None:
            self.journal.created(job_id, task_type, nodeid)

    def on_record(self, record: JobResponse) -> None:
        """A GET or wait returned a record; the first terminal one is kept with its time."""
        with self._lock:
            job = self.jobs.get(record.job_id)
            if job is not None and record.is_terminal and job.final is None:
                job.final = record
                job.terminal_at = time.time()

    def on_deleted(self, job_id: str) -> None:
        """A test deleted one of its jobs itself."""
        with self._lock:
            job = self.jobs.get(job_id)
            if job is not None:
                job.deleted_by_test = True

    def observe(self, request: httpx.Request, response: httpx.Response | None, started: float, error: str | None):
        """Record one request/response pair seen by a recording transport (the response body is read)."""
        nodeid = self.current
        fields, file = _form_of(request)
        status = response.status_code if response is not None else None
        self.on_request(
            RequestRecord(
                nodeid=nodeid,
                started=started,
                method=request.method,
                url=str(request.url),
                status=status,
                elapsed_ms=(time.time() - started) * 1000,
                fields=fields,
                file=file,
                error=error,
                auth="authorization" in request.headers,
            )
        )
        if response is None or status is None or status >= 300:
            return
        match = _JOB_ROUTE.search(request.url.path)
        if match is None:
            return
        if request.method == "POST":
            body = _json(response)
            job_id = body.get("job_id")
            if isinstance(job_id, str):
                task = body.get("task_type")
                self.on_created(job_id, task if isinstance(task, str) else match.group(1), nodeid, started)
        elif request.method == "GET":
            body = _json(response)
            if "status" in body and "job_id" in body:
                with contextlib.suppress(ValueError):
                    self.on_record(JobResponse.model_validate(body))
        elif request.method == "DELETE":
            self.on_deleted(match.group(1))


def _json(response: httpx.Response) -> dict[str, object]:
    try:
        data = cast(object, json.loads(response.content))
    except (ValueError, httpx.ResponseNotRead):
        return {}
    return cast(dict[str, object], data) if isinstance(data, dict) else {}


def _form_of(request: httpx.Request) -> tuple[tuple[tuple[str, str], ...], tuple[str, str, str] | None]:
    """Form fields and the file part of a multipart request (httpx keeps them on its stream)."""
    raw_fields = cast(object, getattr(request.stream, "fields", None))
    if not isinstance(raw_fields, list):
        return (), None
    fields: list[tuple[str, str]] = []
    file: tuple[str, str, str] | None = None
    for part in cast(list[object], raw_fields):
        name = str(cast(object, getattr(part, "name", "")))
        filename = cast(object, getattr(part, "filename", None))
        if filename is not None:
            path = cast(object, getattr(cast(object, getattr(part, "file", None)), "name", filename))
            file = (name, str(filename), str(path))
        else:
            value = cast(object, getattr(part, "value", b""))
            fields.append((name, value.decode(errors="replace") if isinstance(value, bytes) else str(value)))
    return tuple(fields), file


class RecordingTransport(httpx.BaseTransport):
    """An httpx transport that reports every request to the ledger (sync clients)."""

    def __init__(self, ledger: Ledger, inner: httpx.BaseTransport | None = None) -> None:
        self.ledger = ledger
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send through the inner transport and record the exchange."""
        started = time.time()
        try:
            response = self.inner.handle_request(request)
        except Exception as exc:
            self.ledger.observe(request, None, started, f"{type(exc).__name__}: {exc}")
            raise
        if _JOB_ROUTE.search(request.url.path) and request.method in ("POST", "GET"):
            response.read()
        self.ledger.observe(request, response, started, None)
        return response

    def close(self) -> None:
        """Close the inner transport."""
        self.inner.close()


class AsyncRecordingTransport(httpx.AsyncBaseTransport):
    """Async twin of ``RecordingTransport``."""

    def __init__(self, ledger: Ledger, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.ledger = ledger
        self.inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send through the inner transport and record the exchange."""
        started = time.time()
        try:
            response = await self.inner.handle_async_request(request)
        except Exception as exc:
            self.ledger.observe(request, None, started, f"{type(exc).__name__}: {exc}")
            raise
        if _JOB_ROUTE.search(request.url.path) and request.method in ("POST", "GET"):
            await response.aread()
        self.ledger.observe(request, response, started, None)
        return response

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self.inner.aclose()


@dataclass(frozen=True)
class ClientOptions:
    """How to connect the fixture clients.

    Attributes:
        server_url: compute API.
        mqtt_url: broker, or None (polling only).
        token: static JWT.
        auth_url: auth service.
        username: login user.
        password: login password.
    """

    server_url: str
    mqtt_url: str | None
    token: str | None = field(default=None, repr=False)
    auth_url: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def kwargs(self) -> dict[str, str | None]:
        """Keyword arguments for ``ComputeClient``/``AsyncComputeClient``."""
        return {
            "mqtt_url": self.mqtt_url or "off",
            "token": self.token,
            "auth_url": self.auth_url,
            "username": self.username,
            "password": self.password,
        }


#: How a fixture client without a broker polls: first after 0.2 s (the library's default is 1 s), backing off by
#: 1.5 up to 2 s. Most conformance jobs end in well under a second, so with 1 s every polling check waited about a
#: second for nothing (about 30 of them in a certification).
POLLING_FIXTURE_CONFIG = ComputeClientConfig(poll_interval=0.2, poll_backoff=1.5, poll_max_interval=2.0)


class TrackedComputeClient(ComputeClient):
    """The ``compute_client`` fixture's class: a ``ComputeClient`` whose jobs the plugin records and cleans up.

    Job waits (``Job.wait``/``result``, ``wait_for_job``) never last longer than the test's deadline, which is
    shorter than its pytest-timeout, so clean-up still runs when a job hangs. Without a broker (a
    ``polling_only`` factory client, or a run with ``--cl-mqtt off``) it polls with ``POLLING_FIXTURE_CONFIG``.

    Args:
        ledger: where the client's jobs are recorded.
        options: how to connect.
        max_wait: longest job wait in seconds (the test's deadline still applies).
    """

    def __init__(self, ledger: Ledger, options: ClientOptions, max_wait: float | None = None) -> None:
        kw = options.kwargs()
        super().__init__(
            options.server_url,
            mqtt_url=kw["mqtt_url"],
            token=kw["token"],
            auth_url=kw["auth_url"],
            username=kw["username"],
            password=kw["password"],
            config=POLLING_FIXTURE_CONFIG if options.mqtt_url is None else None,
            transport=RecordingTransport(ledger),
        )
        self.cl_ledger = ledger
        self.cl_max_wait = max_wait

    def wait_for_job(
        self,
        job_id: str,
        timeout: float | None = None,
        task_type: str = "unknown",
        *,
        poll_interval: float | None = None,
    ) -> JobResponse:
        """``ComputeClient.wait_for_job`` limited to the test's job-wait deadline."""
        del poll_interval  # accepted for upstream code, as the base class does
        limit = self.cl_ledger.wait_limit(timeout)
        if self.cl_max_wait is not None:
            limit = min(limit, self.cl_max_wait)
        record = super().wait_for_job(job_id, limit, task_type)
        self.cl_ledger.on_record(record)
        return record


class TrackedAsyncComputeClient(AsyncComputeClient):
    """The ``async_compute_client`` fixture's class (see ``TrackedComputeClient``)."""

    def __init__(self, ledger: Ledger, options: ClientOptions) -> None:
        kw = options.kwargs()
        super().__init__(
            options.server_url,
            mqtt_url=kw["mqtt_url"],
            token=kw["token"],
            auth_url=kw["auth_url"],
            username=kw["username"],
            password=kw["password"],
            transport=AsyncRecordingTransport(ledger),
        )
        self.cl_ledger = ledger

    async def wait_for_job(
        self,
        job_id: str,
        timeout: float | None = None,
        task_type: str = "unknown",
        *,
        poll_interval: float | None = None,
    ) -> JobResponse:
        """``AsyncComputeClient.wait_for_job`` limited to the test's job-wait deadline."""
        del poll_interval  # accepted for upstream code, as the base class does
        record = await super().wait_for_job(job_id, self.cl_ledger.wait_limit(timeout), task_type)
        self.cl_ledger.on_record(record)
        return record


def cleanup(
    janitor: ComputeClient, jobs: Iterable[JobRecord], keep: bool, journal: LedgerFile | None = None
) -> list[str]:
    """Delete jobs and verify each deletion (``GET`` must answer 404); return the problems.

    Args:
        janitor: a client without MQTT used only for clean-up (its requests are not recorded).
        jobs: the jobs to clean up (their ``cleanup`` field is set).
        keep: keep them instead (``--cl-keep-jobs``): marked ``kept``.
        journal: the ledger file: a job whose deletion was verified (or that was gone) is settled there.
    """
    problems: list[str] = []
    for job in jobs:
        if job.cleanup:
            continue
        if keep:
            job.cleanup = "kept"
            continue
        try:
            janitor.delete_job(job.job_id)
            job.cleanup = "deleted"
        except JobNotFoundError:
            job.cleanup = "gone"
        except ComputeClientError as exc:
            job.cleanup = f"failed: {exc}"
            problems.append(f"job {job.job_id} ({job.task_type}) of {job.nodeid} could not be deleted: {exc}")
            continue
        try:
            still = janitor.get_job(job.job_id)
        except JobNotFoundError:
            if journal is not None:
                journal.deleted(job.job_id)
            continue
        except ComputeClientError as exc:
            job.cleanup = f"failed: {exc}"
            problems.append(f"job {job.job_id} ({job.task_type}): deletion could not be verified: {exc}")
            continue
        job.cleanup = f"failed: still there ({still.status})"
        problems.append(
            f"job {job.job_id} ({job.task_type}) of {job.nodeid} is still on the server after DELETE "
            f"(status {still.status})"
        )
    return problems


def job_record_text(record: JobResponse | None) -> str:
    """A job record as indented JSON (or a note when there is none)."""
    if record is None:
        return "(no record: the job could not be read)"
    return json.dumps(record.model_dump(mode="json"), indent=2, sort_keys=True)


def summary_of(jobs: Iterable[JobRecord]) -> Mapping[str, str]:
    """User properties describing a test's jobs (ids, latencies, clean-up)."""
    listed = list(jobs)
    latencies = [f"{j.latency_ms:.1f}" for j in listed if j.latency_ms is not None]
    return {
        "cl_jobs": ",".join(j.job_id for j in listed),
        "cl_tasks": ",".join(j.task_type for j in listed),
        "cl_latency_ms": ",".join(latencies),
        "cl_cleanup": ",".join(f"{j.job_id}:{j.cleanup or 'pending'}" for j in listed),
    }
