"""Job tracking shared by the sync and async clients.

One daemon thread per client ("cl-client-tracker") receives job events from the MQTT monitor through a
queue, hands them to the user callbacks (sync ones to the "cl-client-callback" thread(s), coroutine functions
to the loop that registered them), confirms every terminal state with one ``GET /jobs/{id}``, and polls jobs
whose events went silent (or all watched jobs while the broker is unreachable), so a silent upstream failure
still completes. User code never runs on the tracker thread: a slow callback delays neither event dispatch
nor the ``wait()`` of other jobs.

Guarantees per job: ``on_progress`` callbacks fire in event order and never go backwards (an event older than
what was already seen — a ``queued`` event after ``processing``, or lower progress — is dropped: a deployment
whose API and workers publish on separate connections can deliver them out of order); ``on_complete`` fires
exactly once, for ``completed`` and for ``error``; nothing fires after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from cl_client._config import ComputeClientConfig
from cl_client._exceptions import ComputeClientError, JobNotFoundError, JobTimeoutError
from cl_client._models import JobEvent, JobResponse
from cl_client._mqtt import MqttMonitor

log = logging.getLogger("cl_client.tracker")

JobCallback = Callable[[JobResponse], None] | Callable[[JobResponse], Awaitable[None]]
FetchJob = Callable[[str], JobResponse]
Outcome = JobResponse | BaseException


#: Order of the statuses; unknown statuses are not ordered (only their progress is).
_STATUS_RANK = {"queued": 0, "processing": 1, "completed": 2, "error": 2}


@dataclass
class _Subscription:
    sub_id: str
    job_id: str
    on_progress: JobCallback | None
    on_complete: JobCallback | None
    loop: asyncio.AbstractEventLoop | None


@dataclass
class _JobState:
    job_id: str
    task_type: str
    last_status: str | None = None
    last_progress: int = -1
    last_activity: float = field(default_factory=time.monotonic)
    poll_interval: float = 0.0
    next_poll: float = 0.0
    subs: dict[str, _Subscription] = field(default_factory=dict[str, _Subscription])
    waiters: list[Callable[[Outcome], None]] = field(default_factory=list[Callable[[Outcome], None]])
    fetching: bool = False  # a GET for this job is in flight in the fetch pool
    refetch: bool = False  # a terminal event arrived while a GET was in flight: fetch again after it
    unconfirmed: str | None = None  # a terminal status an event reported that no GET has confirmed yet
    server_said: str | None = None  # what the last confirming GET got (an error, or a running status)

    @property
    def interested(self) -> bool:
        return bool(self.subs or self.waiters)

    def is_stale(self, status: str, progress: int | float | None) -> bool:
        """True if a non-terminal update is older than what was already seen (status or progress went back)."""
        new_rank = _STATUS_RANK.get(status)
        old_rank = _STATUS_RANK.get(self.last_status or "")
        if new_rank is not None and old_rank is not None and new_rank < old_rank:
            return True
        return progress is not None and progress < self.last_progress


class _SerialRunner:
    """Runs functions off the caller's thread, in submission order and one at a time per key (job id).

    With one worker, a single daemon thread takes everything from one queue (global order, hence per-key
    order). With more, keys run in parallel on a pool, each key's functions still in order and one at a time.
    """

    def __init__(self, workers: int) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._pool: ThreadPoolExecutor | None = None
        self._queue: queue.SimpleQueue[tuple[str, Callable[[], None]] | None] = queue.SimpleQueue()
        self._pending: dict[str, deque[Callable[[], None]]] = {}  # pool mode: per-key backlog
        self._counts: dict[str, int] = {}  # single-thread mode: calls queued or running per key
        self._thread: threading.Thread | None = None
        if workers > 1:
            self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cl-client-callback")
        else:
            self._thread = threading.Thread(target=self._serve, name="cl-client-callback", daemon=True)
            self._thread.start()

    def run(self, key: str, fn: Callable[[], None]) -> None:
        """Queue ``fn`` after everything queued for ``key`` (runs here once shut down: waiters must be freed)."""
        if self._closed:
            _call(key, fn)
            return
        if self._pool is None:
            with self._lock:
                self._counts[key] = self._counts.get(key, 0) + 1
            self._queue.put((key, fn))
            return
        with self._lock:
            pending = self._pending.get(key)
            if pending is not None:
                pending.append(fn)
                return
            self._pending[key] = deque([fn])
        try:
            self._pool.submit(self._drain, key)
        except RuntimeError:  # shut down meanwhile
            self._drain(key)

    def after(self, key: str, fn: Callable[[], None]) -> None:
        """Run ``fn`` once everything queued for ``key`` has run: at once (here) when nothing is."""
        with self._lock:
            busy = key in self._counts or key in self._pending
        if busy:
            self.run(key, fn)
        else:
            fn()

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            self._serve_one(*item)
        with contextlib.suppress(queue.Empty):  # queued while shutting down: still run them
            while True:
                if (item := self._queue.get_nowait()) is not None:
                    self._serve_one(*item)

    def _serve_one(self, key: str, fn: Callable[[], None]) -> None:
        _call(key, fn)
        with self._lock:
            left = self._counts.get(key, 1) - 1
            if left > 0:
                self._counts[key] = left
            else:
                self._counts.pop(key, None)

    def _drain(self, key: str) -> None:
        while True:
            with self._lock:
                pending = self._pending[key]
                if not pending:
                    del self._pending[key]
                    return
                fn = pending.popleft()
            _call(key, fn)

    def shutdown(self) -> None:
        """Stop taking work; what is queued still runs (never waits: a callback may call this)."""
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        else:
            self._queue.put(None)


def _call(key: str, fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:
        log.exception("callback for job %s raised (ignored)", key)


@dataclass(frozen=True)
class _Subscribe:
    sub: _Subscription


@dataclass(frozen=True)
class _Unsubscribe:
    job_id: str
    sub_id: str


@dataclass(frozen=True)
class _Wait:
    job_id: str
    waiter: Callable[[Outcome], None]
    add: bool  # False: remove the waiter (its wait timed out)


@dataclass(frozen=True)
class _Forget:
    job_id: str


@dataclass(frozen=True)
class _Connection:
    up: bool


@dataclass(frozen=True)
class _Record:
    """The outcome of a GET done in the fetch pool, handed back to the tracker thread."""

    job_id: str
    outcome: JobResponse | Exception


class _Stop:
    pass


_Command = JobEvent | _Subscribe | _Unsubscribe | _Wait | _Forget | _Connection | _Record | _Stop


class JobTracker:
    """Routes events and polls; see the module docstring.

    Args:
        config: client settings (poll intervals, silence timeout).
        monitor: the MQTT monitor, or None to work by polling only.
        fetch_job: a thread-safe sync ``GET /jobs/{id}`` (raises ``JobNotFoundError`` for unknown jobs).
    """

    _FINISHED_KEEP = 10_000

    def __init__(self, config: ComputeClientConfig, monitor: MqttMonitor | None, fetch_job: FetchJob) -> None:
        self.config = config
        self.monitor = monitor
        self._fetch = fetch_job
        self._queue: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._jobs: dict[str, _JobState] = {}
        self._finished: OrderedDict[str, JobResponse] = OrderedDict()
        self._sub_index: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._closed = False
        # GETs (terminal confirmations and polls) run in a small pool so that a slow or unreachable server
        # never delays event dispatch; their outcomes come back through the queue.
        self._pool = ThreadPoolExecutor(max_workers=config.fetch_concurrency, thread_name_prefix="cl-client-fetch")
        # sync user callbacks: off the tracker thread, in order per job
        self._callbacks = _SerialRunner(config.callback_concurrency)
        self._thread = threading.Thread(target=self._run, name="cl-client-tracker", daemon=True)
        self._thread.start()
        if monitor is not None:
            monitor.add_connection_listener(lambda up: self._queue.put(_Connection(up)))

    # -- public API (any thread) ---------------------------------------------------------------------
    def track(
        self, job_id: str, task_type: str = "unknown", first: _Command | None = None, status: str | None = None
    ) -> None:
        """Start recording events of a job; events that arrived before are replayed.

        ``first`` is queued before any replayed event, so a subscription made together with the tracking
        sees the whole job, including events that beat the POST's reply. ``status`` is what the caller
        knows already (``queued`` after a submit); a job tracked without it is fetched as soon as someone
        waits on it or subscribes, since it may have ended before anyone listened.
        """
        with self._lock:
            new = job_id not in self._jobs and job_id not in self._finished
            if new:
                self._jobs[job_id] = _JobState(job_id, task_type, last_status=status)
        if first is not None:
            self._queue.put(first)
        if new and self.monitor is not None:
            self.monitor.add_listener(job_id, self._queue.put)

    def subscribe(
        self,
        job_id: str,
        *,
        task_type: str = "unknown",
        on_progress: JobCallback | None = None,
        on_complete: JobCallback | None = None,
        status: str | None = None,
    ) -> str:
        """Register callbacks for a job and return a subscription id (``status``: see ``track``).

        Coroutine functions are run on the event loop running in the caller's thread (there must be one).
        If the job already finished, ``on_complete`` fires at once (once).
        """
        loop = _running_loop() if _is_async(on_progress) or _is_async(on_complete) else None
        sub_id = f"sub-{next(self._ids)}"
        sub = _Subscription(sub_id, job_id, on_progress, on_complete, loop)
        with self._lock:
            self._sub_index[sub_id] = job_id
        self.track(job_id, task_type, first=_Subscribe(sub), status=status)
        return sub_id

    def unsubscribe(self, sub_id: str) -> bool:
        """Remove a subscription; returns False if it was unknown or already finished."""
        with self._lock:
            job_id = self._sub_index.pop(sub_id, None)
        if job_id is None:
            return False
        self._queue.put(_Unsubscribe(job_id, sub_id))
        return True

    def wait(self, job_id: str, timeout: float, task_type: str = "unknown") -> JobResponse:
        """Block until the job is terminal (confirmed by GET) and return the final record.

        Raises:
            JobTimeoutError: not terminal within ``timeout`` seconds.
            JobNotFoundError: the job does not exist (or was deleted meanwhile).
        """
        done = threading.Event()
        box: list[Outcome] = []

        def waiter(outcome: Outcome) -> None:
            box.append(outcome)
            done.set()

        self.track(job_id, task_type, first=_Wait(job_id, waiter, add=True))
        if not done.wait(timeout):
            self._queue.put(_Wait(job_id, waiter, add=False))
            raise self._timeout_error(job_id, timeout)
        return _unbox(box[0])

    async def wait_async(self, job_id: str, timeout: float | None, task_type: str = "unknown") -> JobResponse:
        """Async twin of ``wait`` (the waiting does not block the event loop; ``timeout=None``: no limit)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Outcome] = loop.create_future()

        def waiter(outcome: Outcome) -> None:
            def settle() -> None:
                if not fut.done():
                    fut.set_result(outcome)

            with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
                loop.call_soon_threadsafe(settle)

        self.track(job_id, task_type, first=_Wait(job_id, waiter, add=True))
        try:
            outcome = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self._queue.put(_Wait(job_id, waiter, add=False))
            raise self._timeout_error(job_id, timeout or 0.0) from None
        return _unbox(outcome)

    def notify_when_done(
        self, job_id: str, callback: Callable[[Outcome], None], task_type: str = "unknown"
    ) -> Callable[[], None]:
        """Call ``callback(outcome)`` once when the job ends: its confirmed final record, or the error that
        ended the tracking (``JobNotFoundError`` for a deleted job, ``ComputeClientError`` on close).

        The callback runs on a client thread (after the job's ``on_complete`` callbacks) and must not block.

        Args:
            job_id: the job.
            callback: receives the outcome.
            task_type: the job's task type (for records built from events).

        Returns:
            A function that cancels the notification (harmless after it fired).
        """
        self.track(job_id, task_type, first=_Wait(job_id, callback, add=True))
        return lambda: self._queue.put(_Wait(job_id, callback, add=False))

    def _timeout_error(self, job_id: str, timeout: float) -> JobTimeoutError:
        with self._lock:
            state = self._jobs.get(job_id)
            unconfirmed = state.unconfirmed if state is not None else None
            said = state.server_said if state is not None else None
        return JobTimeoutError(
            job_id, self.last_status(job_id), timeout, unconfirmed_status=unconfirmed, server_said=said
        )

    def last_status(self, job_id: str) -> str | None:
        """The last status seen for a job (event or poll), or None."""
        with self._lock:
            state = self._jobs.get(job_id)
            if state is not None:
                return state.last_status
            final = self._finished.get(job_id)
            return final.status if final is not None else None

    def reported(self, job_id: str) -> tuple[str, int] | None:
        """What events last said of a running job: (status, progress), a terminal status included even before
        a GET confirmed it; None when the job is not tracked or nothing was seen."""
        with self._lock:
            state = self._jobs.get(job_id)
            if state is None:
                return None
            status = state.unconfirmed or state.last_status
            return (status, max(state.last_progress, 0)) if status is not None else None

    def final(self, job_id: str) -> JobResponse | None:
        """The confirmed final record of a finished job, if the tracker saw it finish."""
        with self._lock:
            return self._finished.get(job_id)

    def forget(self, job_id: str) -> None:
        """Drop a job (after it was deleted): no more callbacks, no more polls."""
        self._queue.put(_Forget(job_id))

    def close(self) -> None:
        """Stop the tracker thread (pending waiters are released with a ComputeClientError)."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._queue.put(_Stop())
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        self._callbacks.shutdown()

    # -- the tracker thread --------------------------------------------------------------------------
    def _run(self) -> None:
        next_sweep = time.monotonic()
        while True:
            timeout = max(0.0, next_sweep - time.monotonic())
            try:
                item: _Command | None = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            try:
                if isinstance(item, _Stop):
                    break
                if item is not None:
                    self._handle(item)
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + 0.1
            except Exception:  # pragma: no cover - the tracker must survive anything
                log.exception("job tracker error")
        self._release_all()

    def _handle(self, item: _Command) -> None:
        match item:
            case JobEvent():
                self._on_event(item)
            case _Subscribe(sub=sub):
                self._add_subscription(sub)
            case _Unsubscribe(job_id=job_id, sub_id=sub_id):
                state = self._jobs.get(job_id)
                if state is not None:
                    state.subs.pop(sub_id, None)
            case _Wait(job_id=job_id, waiter=waiter, add=True):
                self._add_waiter(job_id, waiter)
            case _Wait(job_id=job_id, waiter=waiter):
                state = self._jobs.get(job_id)
                if state is not None and waiter in state.waiters:
                    state.waiters.remove(waiter)
            case _Forget(job_id=job_id):
                self._drop(job_id)
            case _Record(job_id=job_id, outcome=outcome):
                self._on_fetched(job_id, outcome)
            case _Connection(up=False):  # broker lost: poll every watched job soon
                now = time.monotonic()
                for state in self._jobs.values():
                    state.poll_interval = 0.0
                    state.next_poll = now
            case _:
                pass

    def _add_subscription(self, sub: _Subscription) -> None:
        state = self._jobs.get(sub.job_id)
        if state is None:  # already finished: complete at once, exactly once
            final = self._finished.get(sub.job_id)
            if final is not None:
                self._fire(sub, sub.on_progress, final)
                self._fire(sub, sub.on_complete, final)
            with self._lock:
                self._sub_index.pop(sub.sub_id, None)
            return
        state.subs[sub.sub_id] = sub
        self._first_look(state)

    def _add_waiter(self, job_id: str, waiter: Callable[[Outcome], None]) -> None:
        state = self._jobs.get(job_id)
        if state is None:
            final = self._finished.get(job_id)
            if final is None:
                waiter(
                    JobNotFoundError(
                        f"job {job_id} is no longer tracked (deleted?)",
                        job_id=job_id,
                        method="GET",
                        url="",
                        status_code=404,
                        detail=None,
                    )
                )
            else:  # behind any of this job's callbacks still queued: wait() returns after on_complete ran
                self._callbacks.after(job_id, lambda: waiter(final))
            return
        state.waiters.append(waiter)
        self._first_look(state)

    def _on_event(self, event: JobEvent) -> None:
        state = self._jobs.get(event.job_id)
        if state is None:  # finished or forgotten: nothing fires after on_complete
            return
        state.last_activity = time.monotonic()
        if event.is_terminal:
            # Not a status yet: it counts once a GET confirms it (the record is what on_complete gets).
            state.unconfirmed = event.event_type
            self._confirm(state)
            return
        if state.unconfirmed is not None or state.is_stale(event.event_type, event.progress):
            log.debug("dropped stale event %s/%s for job %s", event.event_type, event.progress, event.job_id)
            return
        state.last_status = event.event_type
        if event.progress is not None:
            state.last_progress = int(event.progress)
        synthetic = event.as_job(state.task_type)
        for sub in list(state.subs.values()):
            self._fire(sub, sub.on_progress, synthetic)

    def _confirm(self, state: _JobState) -> None:
        if state.fetching:
            state.refetch = True  # the GET in flight may predate the terminal state
        else:
            self._request_fetch(state)

    def _request_fetch(self, state: _JobState) -> None:
        if self._closed:
            return
        state.fetching = True
        job_id = state.job_id
        try:
            self._pool.submit(self._fetch_task, job_id)
        except RuntimeError:  # the pool was shut down by close()
            state.fetching = False

    def _fetch_task(self, job_id: str) -> None:
        """Runs in the fetch pool: never raises, hands the outcome back to the tracker thread."""
        try:
            outcome: JobResponse | Exception = self._fetch(job_id)
        except Exception as exc:
            outcome = exc
        self._queue.put(_Record(job_id, outcome))

    def _on_fetched(self, job_id: str, outcome: JobResponse | Exception) -> None:
        state = self._jobs.get(job_id)
        if state is None:
            return
        state.fetching = False
        if isinstance(outcome, JobNotFoundError):
            self._finish_missing(state, outcome)
            return
        state.poll_interval = min(
            self.config.poll_max_interval,
            max(self.config.poll_interval, state.poll_interval * self.config.poll_backoff),
        )
        state.next_poll = time.monotonic() + state.poll_interval
        if isinstance(outcome, Exception):
            log.debug("GET of job %s failed: %s; will poll again", job_id, outcome)
            state.server_said = f"the confirming request failed: {outcome}"
            return
        self._on_record(state, outcome)
        if state.refetch and job_id in self._jobs:
            state.refetch = False
            self._request_fetch(state)

    def _on_record(self, state: _JobState, job: JobResponse) -> None:
        if job.is_terminal:
            state.last_status = job.status
            self._finish(state, job)
            return
        if state.unconfirmed is not None:  # an event said it ended; the server does not (yet) agree
            state.server_said = f"GET /jobs/{job.job_id} answered {job.status!r}"
            return
        if state.is_stale(job.status, job.progress):  # a GET answered before a newer event arrived
            return
        state.last_status = job.status
        if job.progress != state.last_progress:
            state.last_progress = job.progress
            for sub in list(state.subs.values()):
                self._fire(sub, sub.on_progress, job)

    def _finish(self, state: _JobState, job: JobResponse) -> None:
        self._drop(state.job_id, final=job)
        for sub in state.subs.values():
            self._fire(sub, sub.on_progress, job)
            self._fire(sub, sub.on_complete, job)
        waiters = list(state.waiters)

        def release() -> None:
            for waiter in waiters:
                waiter(job)

        if waiters:  # wait() returns after this job's on_complete callbacks (queued just above) ran
            self._callbacks.after(state.job_id, release)

    def _finish_missing(self, state: _JobState, exc: JobNotFoundError) -> None:
        self._drop(state.job_id)
        for waiter in state.waiters:
            waiter(exc)

    def _drop(self, job_id: str, final: JobResponse | None = None) -> None:
        with self._lock:
            state = self._jobs.pop(job_id, None)
            if state is not None:
                for sub_id in state.subs:
                    self._sub_index.pop(sub_id, None)
            if final is not None:
                self._finished[job_id] = final
                while len(self._finished) > self._FINISHED_KEEP:
                    self._finished.popitem(last=False)
        if self.monitor is not None:
            self.monitor.remove_listener(job_id)

    def _first_look(self, state: _JobState) -> None:
        """Someone started waiting or listening: fetch now if nothing is known about the job yet."""
        if state.last_status is None and not state.fetching:
            self._request_fetch(state)
        else:
            self._schedule_poll(state, time.monotonic())

    def _schedule_poll(self, state: _JobState, now: float) -> None:
        if state.next_poll == 0.0:
            state.next_poll = now + (
                self.config.poll_interval
                if self.monitor is None or not self.monitor.ready
                else self.config.event_silence_timeout
            )

    def _sweep(self, now: float) -> None:
        events_live = self.monitor is not None and self.monitor.ready
        for state in self._jobs.values():
            if state.fetching or not state.interested:
                continue
            if events_live:
                due = max(state.last_activity + self.config.event_silence_timeout, state.next_poll)
            else:
                due = state.next_poll
            if now >= due:
                self._request_fetch(state)

    def _fire(self, sub: _Subscription, callback: JobCallback | None, job: JobResponse) -> None:
        if callback is None:
            return
        if sub.loop is not None and _is_async(callback):
            try:
                coro = callback(job)
                assert inspect.iscoroutine(coro)
                future: Future[None] = asyncio.run_coroutine_threadsafe(coro, sub.loop)
                future.add_done_callback(_log_failure)
            except Exception:
                log.exception("callback for job %s raised (ignored)", job.job_id)
            return

        def call() -> None:
            result = callback(job)
            if inspect.isawaitable(result):  # an async callable registered without a loop
                log.warning("callback for job %s returned an awaitable but no loop was running", job.job_id)
                if inspect.iscoroutine(result):
                    result.close()

        self._callbacks.run(job.job_id, call)

    def _release_all(self) -> None:
        for state in list(self._jobs.values()):
            for waiter in state.waiters:
                waiter(ComputeClientError(f"the client was closed while waiting for job {state.job_id}"))
            state.waiters.clear()


def _is_async(callback: object) -> bool:
    return callback is not None and inspect.iscoroutinefunction(callback)


def _running_loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise ComputeClientError(
            "async callbacks need a running event loop: subscribe from inside async code"
        ) from None


def _unbox(outcome: Outcome) -> JobResponse:
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _log_failure(future: Future[None]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("async callback raised (ignored): %r", exc)
