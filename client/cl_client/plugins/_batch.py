"""Run many plugin jobs at once: validate everything, submit everything, wait for all with one deadline.

Used by the CLI and the workflow suites::

    items = [BatchItem("clip_embedding", p) for p in photos] + [BatchItem("hash", p, {"algorithm": "md5"})]
    outcomes = run_batch(client, items, timeout=120, on_progress=print)
    vectors = [o.unwrap() for o in outcomes]          # input order; unwrap raises the item's error
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cl_client._exceptions import (
    AuthenticationError,
    ComputeClientError,
    ComputeConnectionError,
    ConfigurationError,
    JobFailedError,
    JobTimeoutError,
    PermissionDeniedError,
)
from cl_client._models import JobResponse
from cl_client.plugins._base import (
    AsyncPluginJob,
    AsyncRunner,
    PluginJob,
    PluginResult,
    PluginSpec,
    SubmitOptions,
    SyncRunner,
)
from cl_client.plugins._fields import WireValue

if TYPE_CHECKING:
    from cl_client._client import AsyncComputeClient, ComputeClient

#: Errors that stop a whole batch (nothing else could succeed either).
FATAL_ERRORS = (ComputeConnectionError, AuthenticationError, PermissionDeniedError)


@dataclass(frozen=True)
class BatchItem:
    """One input of a batch.

    Attributes:
        task_type: the plugin (``clip_embedding`` or ``clip-embedding``).
        file: the input file.
        params: form fields by name (defaults for the rest).
        priority: 0-10 (default from the client's config).
        filename: upload name (default: the file's name).
    """

    task_type: str
    file: str | Path
    params: Mapping[str, object] = field(default_factory=dict[str, object])
    priority: int | None = None
    filename: str | None = None

    @property
    def label(self) -> str:
        """A short display name: ``<file name> (<task type>)``."""
        return f"{Path(self.file).name} ({self.task_type})"


@dataclass(frozen=True)
class BatchUpdate:
    """What the progress callback receives on every change of any job.

    Attributes:
        index: the item's position in the input.
        item: the item.
        job_id: the job (None when submission failed).
        status: ``queued``, ``processing``, ``completed`` or ``error``.
        progress: 0-100.
        finished: how many items have ended (either way).
        total: how many items there are.
        error: the error message for a failed item.
    """

    index: int
    item: BatchItem
    job_id: str | None
    status: str
    progress: int
    finished: int
    total: int
    error: str | None = None


@dataclass
class BatchOutcome:
    """The outcome of one item, in input order.

    Attributes:
        index: the item's position.
        item: the item.
        record: the last job record (None when submission failed).
        result: the typed result (None on error, or when results were not fetched).
        error: what went wrong (``JobFailedError``, ``JobTimeoutError``, a submission error...), or None.
    """

    index: int
    item: BatchItem
    record: JobResponse | None = None
    result: PluginResult | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        """True when the job completed (and its result was read, if asked)."""
        return self.error is None and self.record is not None and self.record.is_completed

    @property
    def job_id(self) -> str | None:
        """The job's id (None when submission failed)."""
        return self.record.job_id if self.record is not None else None

    def unwrap(self) -> PluginResult:
        """The typed result.

        Raises:
            The item's error (``JobFailedError``, ``JobTimeoutError``, ...); ``ComputeClientError`` when results
            were not fetched.
        """
        if self.error is not None:
            raise self.error
        if self.result is None:
            raise ComputeClientError(f"batch item {self.index} has no result (run with fetch_results=True)")
        return self.result


ProgressCallback = Callable[[BatchUpdate], None]


def _prepare(items: Sequence[BatchItem]) -> list[tuple[PluginSpec[PluginResult], dict[str, WireValue]]]:
    """Validate every item before anything is sent."""
    from cl_client.plugins import get_spec

    prepared: list[tuple[PluginSpec[PluginResult], dict[str, WireValue]]] = []
    for i, item in enumerate(items):
        try:
            spec = get_spec(item.task_type)
            fields = spec.check(item.params)
            if not Path(item.file).is_file():
                raise ConfigurationError(f"no such file: {item.file}")
        except ConfigurationError as exc:
            raise ConfigurationError(f"batch item {i} ({item.file}): {exc}") from None
        prepared.append((spec, fields))
    return prepared


class _State:
    """Outcomes plus the progress callback (called from the tracker thread and the caller's thread)."""

    def __init__(self, items: Sequence[BatchItem], on_progress: ProgressCallback | None) -> None:
        self.items = items
        self.outcomes = [BatchOutcome(i, item) for i, item in enumerate(items)]
        self.on_progress = on_progress
        self._lock = threading.Lock()
        self._ended: set[int] = set()
        self._job_ids: dict[int, str] = {}

    def emit(self, index: int, status: str, progress: int, *, final: bool = False, error: str | None = None) -> None:
        with self._lock:
            if index in self._ended:
                return
            if final:
                self._ended.add(index)
            update = BatchUpdate(
                index, self.items[index], self._job_ids.get(index), status, progress, len(self._ended),
                len(self.items), error,
            )  # fmt: skip
        if self.on_progress is not None:
            self.on_progress(update)

    def options(self, index: int, spec: PluginSpec[PluginResult]) -> SubmitOptions:
        item = self.items[index]

        def progress(job: JobResponse) -> None:
            if not job.is_terminal:
                self.emit(index, job.status, job.progress)

        return SubmitOptions(item.priority, False, None, progress, None, item.filename, fetch_record=False)

    def submitted(self, index: int, record: JobResponse) -> None:
        with self._lock:
            self._job_ids[index] = record.job_id
        self.outcomes[index].record = record
        self.emit(index, record.status, record.progress)

    def failed(self, index: int, exc: Exception, record: JobResponse | None = None) -> None:
        outcome = self.outcomes[index]
        outcome.error = exc
        if record is not None:
            outcome.record = record
        status = "timeout" if isinstance(exc, JobTimeoutError) else "error"
        self.emit(index, status, record.progress if record else 0, final=True, error=str(exc))

    def finished(self, index: int, record: JobResponse, result: PluginResult | None) -> None:
        outcome = self.outcomes[index]
        outcome.record = record
        outcome.result = result
        self.emit(index, record.status, 100, final=True)


def _deadline(timeout: float | None, client_default: float) -> float:
    return time.monotonic() + (client_default if timeout is None else timeout)


def run_batch(
    client: ComputeClient,
    items: Sequence[BatchItem],
    *,
    timeout: float | None = None,
    on_progress: ProgressCallback | None = None,
    fetch_results: bool = True,
) -> list[BatchOutcome]:
    """Submit every item, wait for all of them within one deadline, and return the outcomes in input order.

    Every item is validated before the first one is sent. A failed, timed-out or rejected item does not stop
    the others: its outcome carries the error. Connection and auth errors stop the batch (raised).

    Args:
        client: the client.
        items: the inputs.
        timeout: seconds for the whole batch (default: the client's ``job_timeout``).
        on_progress: called with a ``BatchUpdate`` on every change (from a background thread).
        fetch_results: also read each typed result (downloads the vectors / JSON files).

    Returns:
        One ``BatchOutcome`` per item, in input order.

    Raises:
        ConfigurationError: an item is invalid (nothing was sent).
        ComputeConnectionError, AuthenticationError, PermissionDeniedError: the batch cannot run.
    """
    prepared = _prepare(items)
    state = _State(items, on_progress)
    deadline = _deadline(timeout, client.config.job_timeout)
    jobs: dict[int, PluginJob[PluginResult]] = {}
    for i, (spec, fields) in enumerate(prepared):
        try:
            jobs[i] = SyncRunner(client, spec).submit(items[i].file, fields, state.options(i, spec))
        except FATAL_ERRORS:
            raise
        except (ComputeClientError, OSError) as exc:
            state.failed(i, exc)
            continue
        state.submitted(i, jobs[i].record)
    # Handle the jobs in the order they end (not in input order), so each item's outcome and final progress
    # update come as soon as its job ends, whatever the jobs before it in the input are doing.
    ended: queue.SimpleQueue[int] = queue.SimpleQueue()

    def on_end(index: int) -> Callable[[object], None]:
        return lambda _outcome: ended.put(index)

    cancels = [client.tracker.notify_when_done(job.job_id, on_end(i), job.task_type) for i, job in jobs.items()]
    pending = dict(jobs)
    try:
        while pending:
            try:
                order = [ended.get(timeout=max(0.0, deadline - time.monotonic()))]
            except queue.Empty:
                order = list(pending)  # the deadline passed: the rest time out, in input order
            for i in order:
                job = pending.pop(i, None)
                if job is None:
                    continue
                try:
                    record = job.wait(max(0.001, deadline - time.monotonic()))
                    if record.is_failed:
                        raise JobFailedError(record)
                    state.finished(i, record, job.result() if fetch_results else None)
                except FATAL_ERRORS:
                    raise
                except ComputeClientError as exc:
                    state.failed(i, exc, job.record)
    finally:
        for cancel in cancels:
            cancel()
    return state.outcomes


async def run_batch_async(
    client: AsyncComputeClient,
    items: Sequence[BatchItem],
    *,
    timeout: float | None = None,
    on_progress: ProgressCallback | None = None,
    fetch_results: bool = True,
    max_concurrent_uploads: int = 4,
) -> list[BatchOutcome]:
    """Async ``run_batch`` (uploads run ``max_concurrent_uploads`` at a time; waits run concurrently)."""
    prepared = _prepare(items)
    state = _State(items, on_progress)
    deadline = _deadline(timeout, client.config.job_timeout)
    gate = asyncio.Semaphore(max(1, max_concurrent_uploads))

    async def one(i: int, spec: PluginSpec[PluginResult], fields: dict[str, WireValue]) -> None:
        job: AsyncPluginJob[PluginResult] | None = None
        try:
            async with gate:
                job = await AsyncRunner(client, spec).submit(items[i].file, fields, state.options(i, spec))
            state.submitted(i, job.record)
            record = await job.wait(max(0.001, deadline - time.monotonic()))
            if record.is_failed:
                raise JobFailedError(record)
            state.finished(i, record, await job.result() if fetch_results else None)
        except FATAL_ERRORS:
            raise
        except (ComputeClientError, OSError) as exc:
            state.failed(i, exc, job.record if job is not None else None)

    await asyncio.gather(*(one(i, spec, fields) for i, (spec, fields) in enumerate(prepared)))
    return state.outcomes
