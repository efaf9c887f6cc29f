"""A compute worker: claims jobs from the shared store and runs them in a child "executor" process.

Two processes per worker:

* the **supervisor** (this module's :class:`Worker`, the process ``cl-compute worker`` starts) holds the MQTT
  connection (last will = empty retained capability message, registered at CONNECT), publishes capability
  state changes and a heartbeat, claims jobs (atomic ``UPDATE … RETURNING`` on the shared SQLite store, see
  ``store.py``), stores progress and results, and publishes job events;
* the **executor** (a ``multiprocessing`` spawn child in its own process group) imports and ``load()``s the
  plugins once and runs one job at a time. Because a job runs there, the supervisor can always enforce the
  per-job time limit, a delete (cancellation) or a crash: it kills the executor's whole process group
  (subprocesses such as ffmpeg included), records the outcome and starts a fresh executor. The executor dies
  with its supervisor, and takes its own subprocesses along (``PR_SET_PDEATHSIG`` + a parent watcher kill the
  executor's process group; EOF on its pipe ends an idle executor).

Wake-up: the supervisor subscribes to ``cl-compute/jobs/new``, which the API publishes once a new job's row
exists (after its ``queued`` event was acknowledged, so ``processing`` can never overtake ``queued``); it wakes
the supervisor at once (claim latency is a few ms). A slow poll (``poll_interval``) is only a safety net.

Profile ``upstream-2026-01`` (``cl_compute.profile``): the worker side of upstream's quirks, each switched in
one place: ``idle_poll`` (:meth:`Worker._serve_polling`: no wake-up, a claim attempt every ``IDLE_POLL_SECONDS``
with ``idle_count`` 0 before and 1 after it), ``late_will`` (the will is set after CONNECT, so a killed worker's
retained message stays), ``capability_id_only`` (upstream's four-key capability payload), ``silent_failures``
(no event for a job whose plugin raised) and ``no_progress_events`` (progress is stored, not published).
Profile ``upstream-2026-02`` adds ``capability_worker_id_only`` (February's four keys, ``worker_id`` for ``id``)
and ``fast_idle_poll`` (a 1 s poll); ``upstream-2026-02-20`` adds ``ml_tools_broken_plugins`` (every job of
``cl_compute.profile.ML_TOOLS_BROKEN_PLUGINS`` ends ``error`` with upstream's message, in the executor).

Cancellation: ``TaskContext.report_progress`` raises ``JobCancelled`` in the executor when the job is no longer
``processing`` for this worker (deleted, or reaped by the server). The supervisor also checks every 0.25 s and
kills the executor when a cancelled job does not stop within ``cancel_grace`` seconds. Leftover files of a
deleted job are removed before the worker reports itself idle again.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias, cast

from cl_compute._extra import missing_extra_message, missing_extra_module
from cl_compute.mqtt import WAKE_TOPIC, WORKERS_TOPIC_PREFIX, MQTTConnection, Will
from cl_compute.owned_tmp import proc_stat
from cl_compute.plugins import plugin_names
from cl_compute.profile import IDLE_POLL_SECONDS, IDLE_POLL_SECONDS_2026_02, ML_TOOLS_BROKEN_PLUGINS, quirks
from cl_compute.store import Job, JobStore, now_ms

if TYPE_CHECKING:
    from cl_compute.plugins.base import Plugin

log = logging.getLogger(__name__)

# The executor pipe (pickled tuples both ways; the aliases are strings because Connection is not subscriptable
# at runtime). Supervisor -> executor: a job to run, or None to exit.
_JobRequest: TypeAlias = "tuple[str, str, str, dict[str, object], float]"  # job_id, task_type, job_dir, params, limit
# Executor -> supervisor: (available, details, unavailable, lacking) once the plugins are loaded, then per job
# any number of progress messages and one outcome.
_Ready: TypeAlias = "tuple[Literal['ready'], list[str], dict[str, dict[str, str]], dict[str, str], dict[str, str]]"
_Outcome: TypeAlias = (
    "tuple[Literal['done'], dict[str, object]] | tuple[Literal['error'], str] | tuple[Literal['cancelled']]"
)
_ExecutorMessage: TypeAlias = "_Ready | tuple[Literal['progress'], int] | _Outcome"
_ExecutorEnd: TypeAlias = "multiprocessing.connection.Connection[_ExecutorMessage, _JobRequest | None]"
_SupervisorEnd: TypeAlias = "multiprocessing.connection.Connection[_JobRequest | None, _ExecutorMessage]"


class ServerExtraMissing(RuntimeError):
    """No requested plugin loads, and at least one failed because the ``server`` extra is not installed.

    Attributes:
        modules: the missing modules of the extra (sorted).
    """

    def __init__(self, modules: list[str]) -> None:
        super().__init__(missing_extra_message(modules))
        self.modules = modules


def set_pdeathsig(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (no-op elsewhere)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def job_was_cancelled(job: Job | None, worker_id: str) -> bool:
    """Whether the job a worker runs was cancelled: deleted, ended meanwhile (reaped), or given to another worker.

    With the planted fault ``fault_delete_does_not_cancel`` only a job given to another worker counts: a deleted
    or reaped job runs on to its end (what upstream does, PROTOCOL.md §4).

    Args:
        job: the job's current row (None when it was deleted).
        worker_id: the worker that runs it.
    """
    if quirks().fault_delete_does_not_cancel:
        return job is not None and job.worker_id != worker_id
    return job is None or job.status != "processing" or job.worker_id != worker_id


@dataclass
class WorkerSettings:
    """Configuration of one worker.

    Attributes:
        worker_id: the id used in the capability topic and job records.
        data_dir: shared data directory (same as the server's).
        mqtt_url: broker URL.
        tasks: task types to serve (None = every registered plugin); those whose ``load()`` fails are left out.
        job_time_limit: seconds a job may run before it ends ``error`` and the executor is restarted.
        heartbeat_interval: seconds between capability re-publications; the job lease is 3x this.
        poll_interval: safety-net poll when no wake-up event arrives.
        cancel_grace: seconds a cancelled job may take to stop before its executor is killed.
        shutdown_grace: seconds a running job may take to finish after SIGTERM before it is abandoned.
    """

    worker_id: str
    data_dir: Path
    mqtt_url: str
    tasks: list[str] | None = None
    job_time_limit: float = 600.0
    heartbeat_interval: float = 10.0
    poll_interval: float = 2.0
    cancel_grace: float = 1.0
    shutdown_grace: float = 5.0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def lease_ms(self) -> int:
        """Lease length in ms (three heartbeats)."""
        return int(self.heartbeat_interval * 3000)


# ---------------------------------------------------------------------------------------------------------
# executor (child process)


def _kill_own_group(*_: object) -> None:
    """Kill this process's whole group (the executor and everything it started: ffmpeg, ExifTool, …)."""
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _die_with_parent(parent: int) -> None:
    """Make the executor's process group die with its supervisor, even after ``kill -9`` of the supervisor.

    ``PR_SET_PDEATHSIG`` delivers SIGTERM, whose handler kills the group; a watcher thread does the same when
    the parent changes, in case the main thread is stuck in native code and the handler cannot run.
    """
    signal.signal(signal.SIGTERM, _kill_own_group)
    set_pdeathsig(signal.SIGTERM)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.25)
        _kill_own_group()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _executor_main(conn: _ExecutorEnd, task_types: list[str], data_dir: str, worker_id: str, log_level: int) -> None:
    os.setsid()
    _die_with_parent(os.getppid())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format=f"%(asctime)s executor[{worker_id}] %(levelname)s %(message)s")
    from cl_compute.plugins import get_plugin
    from cl_compute.plugins.base import BackendUnavailable, JobCancelled, PluginError, TaskContext

    plugins: dict[str, Plugin] = {}
    details: dict[str, dict[str, str]] = {}
    unavailable: dict[str, str] = {}
    lacking: dict[str, str] = {}  # task type -> the module of the server extra it could not import
    for tt in task_types:
        try:
            plugin = get_plugin(tt)
            plugin.load()
        except Exception as exc:
            if isinstance(exc, BackendUnavailable):
                unavailable[tt] = str(exc) or "backend unavailable"
            else:
                unavailable[tt] = f"{type(exc).__name__}: {exc}"
            module = missing_extra_module(exc)
            if module is not None:
                lacking[tt] = module
            continue
        plugins[tt] = plugin
        details[tt] = {str(k): str(v) for k, v in dict(plugin.details).items()}
    # the supervisor logs what is unavailable (once, not again after each executor restart)
    conn.send(("ready", sorted(plugins), details, unavailable, lacking))
    store = JobStore(Path(data_dir))
    send_lock = threading.Lock()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job_id, task_type, job_dir, params, time_limit = msg
        job_path = Path(job_dir)

        def progress(percent: int, _job_id: str = job_id) -> None:
            with send_lock:
                conn.send(("progress", percent))
            if job_was_cancelled(store.get_job(_job_id), worker_id):
                raise JobCancelled(f"job {_job_id} was cancelled")

        input_rel = str(params.get("input_path", ""))
        ctx = TaskContext(
            job_id=job_id,
            job_dir=job_path,
            input_path=job_path / input_rel,
            params=params,
            progress=progress,
            time_limit=time_limit,
        )
        try:
            plugin = plugins.get(task_type)
            if plugin is None:
                raise PluginError(f"task type {task_type} is not available on worker {worker_id}")
            if task_type in ML_TOOLS_BROKEN_PLUGINS and quirks().ml_tools_broken_plugins:
                raise PluginError(ML_TOOLS_BROKEN_PLUGINS[task_type])  # upstream's plugin fails before any work
            # run() is annotated dict[str, object]; a plugin returning None anyway completes with {}
            output = cast("dict[str, object] | None", plugin.run(ctx))
            result: _Outcome = ("done", output if output is not None else {})
        except JobCancelled:
            result = ("cancelled",)
        except PluginError as exc:
            result = ("error", str(exc) or type(exc).__name__)
        except BaseException as exc:
            logging.getLogger(__name__).exception("plugin %s failed on job %s", task_type, job_id)
            result = ("error", f"{type(exc).__name__}: {exc}")
        _kill_group_members()
        with send_lock:
            try:
                conn.send(result)
            except Exception as exc:  # unpicklable task_output
                conn.send(("error", f"plugin returned an unusable task_output: {exc}"))


def _reap_children() -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _kill_group_members(timeout: float = 2.0) -> None:
    """Kill every other process of the executor's process group (subprocesses a plugin left behind).

    Waits (up to ``timeout``) until they are really gone, reaping the executor's own children.
    """
    me = os.getpid()
    group = os.getpgrp()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    killed: list[int] = []
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        fields = proc_stat(int(entry))
        try:
            if fields is not None and int(fields[2]) == group and fields[0] != "Z":
                os.kill(int(entry), signal.SIGKILL)
                killed.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    deadline = time.monotonic() + timeout
    while True:
        _reap_children()
        alive = [pid for pid in killed if (f := proc_stat(pid)) is not None and f[0] != "Z"]
        if not alive or time.monotonic() > deadline:
            return
        time.sleep(0.005)


class _Executor:
    """Handle on the executor child process."""

    def __init__(self, settings: WorkerSettings, task_types: list[str]) -> None:
        ctx = multiprocessing.get_context("spawn")
        # The pipe carries the messages typed above (Pipe() itself is untyped: Connection[Any, Any]).
        self.conn, child = cast("tuple[_SupervisorEnd, _ExecutorEnd]", ctx.Pipe())
        self.process = ctx.Process(
            target=_executor_main,
            args=(child, task_types, str(settings.data_dir), settings.worker_id, logging.getLogger().level),
            name=f"cl-compute-executor-{settings.worker_id}",
            daemon=True,
        )
        self.process.start()
        child.close()

    def wait_ready(self) -> tuple[list[str], dict[str, dict[str, str]], dict[str, str], dict[str, str]]:
        """Block until the plugins are loaded; returns (available, details, unavailable, lacking).

        ``unavailable`` maps a task type to why it did not load; ``lacking`` maps those that failed for want of
        the ``server`` extra to the module that is missing.

        Raises:
            RuntimeError: the executor died while loading.
        """
        while True:
            if self.conn.poll(0.1):
                try:
                    msg = self.conn.recv()
                except EOFError as exc:
                    raise RuntimeError(f"executor died while loading plugins (exit {self.process.exitcode})") from exc
                if msg[0] == "ready":
                    return msg[1], msg[2], msg[3], msg[4]
            elif not self.process.is_alive():
                raise RuntimeError(f"executor died while loading plugins (exit {self.process.exitcode})")

    def kill(self) -> None:
        """Kill the executor and its whole process group."""
        pid = self.process.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        self.process.join(5)
        if pid is not None:  # wait until every member of the group is gone
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                try:
                    os.killpg(pid, 0)
                except (ProcessLookupError, PermissionError):
                    break
                time.sleep(0.005)
        self.conn.close()

    def close(self) -> None:
        """Ask the executor to exit, then make sure it did."""
        with contextlib.suppress(Exception):
            self.conn.send(None)
        self.process.join(2)
        if self.process.is_alive():
            self.kill()
        else:
            pid = self.process.pid
            if pid is not None:  # stray subprocesses of the last job
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
            self.conn.close()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown exit status"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


# ---------------------------------------------------------------------------------------------------------
# supervisor


class Worker:
    """The worker supervisor; :meth:`run` blocks until :meth:`request_stop` (or SIGTERM/SIGINT).

    Args:
        settings: the worker's configuration.
    """

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.worker_id = settings.worker_id
        self.topic = f"{WORKERS_TOPIC_PREFIX}/{settings.worker_id}"
        self.requested = settings.tasks if settings.tasks is not None else plugin_names()
        self.capabilities: list[str] = []
        self.details: dict[str, dict[str, str]] = {}
        self.unavailable: dict[str, str] = {}
        self.idle = True
        self.current_job: str | None = None
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._wake = threading.Event()
        self._state_lock = threading.Lock()
        self.store = JobStore(settings.data_dir)
        self.mqtt = MQTTConnection(
            settings.mqtt_url,
            client_id_prefix=f"cl-compute-worker-{settings.worker_id}",
            subscriptions=[WAKE_TOPIC],
            on_message=self._on_message,
            will=Will(self.topic, b"", qos=1, retain=True),
            will_after_connect=quirks().late_will,
        )
        self.executor: _Executor | None = None

    # -- signals and messages ---------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """First SIGTERM/SIGINT: finish (or after ``shutdown_grace`` abandon) the job and exit; second: abandon."""

        def handler(signum: int, frame: object) -> None:
            if self._stop.is_set():
                self._abandon.set()
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def request_stop(self) -> None:
        """Ask :meth:`run` to return after the current job."""
        self._stop.set()
        self._wake.set()

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        if topic == WAKE_TOPIC and not retained:
            self._wake.set()

    # -- capability -------------------------------------------------------------------------------------

    def capability_payload(self) -> dict[str, object]:
        """The retained capability message (both ``id`` and ``worker_id``, plus ``details``).

        With the profile quirk ``capability_id_only`` it is upstream's exact January payload:
        ``{"id", "capabilities", "idle_count", "timestamp"}``; with ``capability_worker_id_only`` February's:
        ``{"worker_id", "capabilities", "idle_count", "timestamp"}``.
        """
        with self._state_lock:
            if quirks().capability_id_only:
                return {
                    "id": self.worker_id,
                    "capabilities": list(self.capabilities),
                    "idle_count": 1 if self.idle else 0,
                    "timestamp": now_ms(),
                }
            if quirks().capability_worker_id_only:
                return {
                    "worker_id": self.worker_id,
                    "capabilities": list(self.capabilities),
                    "idle_count": 1 if self.idle else 0,
                    "timestamp": now_ms(),
                }
            return {
                "id": self.worker_id,
                "worker_id": self.worker_id,
                "capabilities": list(self.capabilities),
                "idle_count": 1 if self.idle else 0,
                "timestamp": now_ms(),
                "details": self.details,
                "unavailable": self.unavailable,
                "pid": os.getpid(),
            }

    def publish_capability(self, wait: bool = False) -> None:
        """Publish the current state, retained."""
        payload = json.dumps(self.capability_payload())
        if wait:
            self.mqtt.publish_wait(self.topic, payload, retain=True)
        else:
            self.mqtt.publish(self.topic, payload, retain=True)

    def _set_idle(self, idle: bool) -> None:
        with self._state_lock:
            changed = self.idle != idle
            self.idle = idle
        if changed:
            self.publish_capability()

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval):
            self.publish_capability()
            job_id = self.current_job
            if job_id is not None:
                with contextlib.suppress(Exception):
                    self.store.extend_lease(job_id, self.worker_id, self.settings.lease_ms)

    # -- main loop --------------------------------------------------------------------------------------

    def _start_executor(self) -> None:
        self.executor = _Executor(self.settings, self.requested)
        available, details, unavailable, _lacking = self.executor.wait_ready()
        with self._state_lock:
            self.capabilities = available
            self.details = details
            self.unavailable = unavailable

    def _log_unavailable(self, unavailable: dict[str, str], lacking: dict[str, str]) -> None:
        """A line per plugin that did not load, except those that lack the server extra: one line for them all."""
        for tt, why in unavailable.items():
            if tt not in lacking:
                log.warning("plugin %s unavailable: %s", tt, why)
        if lacking:
            names = ", ".join(sorted(lacking))
            log.warning("plugins unavailable (%s): %s", names, missing_extra_message(lacking.values()))

    def run(self) -> int:
        """Load the plugins, connect, announce, and serve until stopped; returns an exit status.

        Raises:
            ServerExtraMissing: no plugin loads, and the ``server`` extra is (at least part of) why; nothing
                was published and the broker was not contacted.
            MQTTConnectError: the broker did not accept the connection.
        """
        self.executor = _Executor(self.settings, self.requested)
        try:
            available, details, unavailable, lacking = self.executor.wait_ready()
            if not available and lacking:  # the command says it (once); other reasons are logged here
                self._log_unavailable({tt: why for tt, why in unavailable.items() if tt not in lacking}, {})
                raise ServerExtraMissing(sorted(set(lacking.values())))
            self._log_unavailable(unavailable, lacking)
            self.mqtt.start()
        except BaseException:
            self.executor.close()
            self.executor = None
            raise
        with self._state_lock:
            self.capabilities = available
            self.details = details
            self.unavailable = unavailable
        if not available:
            log.error("worker %s: no plugin available among %s: %s", self.worker_id, self.requested, unavailable)
        self.publish_capability(wait=True)
        log.info("worker %s ready: %s", self.worker_id, ", ".join(available) or "(nothing)")
        heartbeat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        heartbeat.start()
        try:
            if quirks().idle_poll:
                self._serve_polling()
            else:
                self._serve()
        finally:
            self._shutdown()
        return 0

    def _serve(self) -> None:
        """Claim and run jobs until stopped; woken at once by the API's wake message, else a slow safety poll."""
        while not self._stop.is_set():
            self._wake.clear()
            job = self.store.claim_next(self.capabilities, self.worker_id, self.settings.lease_ms)
            if job is None:
                self._wake.wait(self.settings.poll_interval)
                continue
            self._run_job(job)

    def _serve_polling(self) -> None:
        """Upstream's loop (profile quirk ``idle_poll``): busy, one claim attempt, idle; sleep only if none.

        Every cycle publishes ``idle_count`` 0 before the claim attempt and 1 after it, so an idle worker's
        retained state flips every ``IDLE_POLL_SECONDS`` (``IDLE_POLL_SECONDS_2026_02`` with ``fast_idle_poll``);
        wake messages are ignored (a new job waits for the next poll), and after a job the next claim attempt
        follows at once.
        """
        interval = IDLE_POLL_SECONDS_2026_02 if quirks().fast_idle_poll else IDLE_POLL_SECONDS
        while not self._stop.is_set():
            self._set_idle(False)
            job = self.store.claim_next(self.capabilities, self.worker_id, self.settings.lease_ms)
            if job is not None:
                self._run_job(job)  # publishes idle_count 1 itself when it ends
            self._set_idle(True)
            if job is None:
                self._stop.wait(interval)

    def _shutdown(self) -> None:
        if self.executor is not None:
            self.executor.close()
            self.executor = None
        if not quirks().fault_capability_not_cleared:
            with contextlib.suppress(Exception):
                self.mqtt.publish_wait(self.topic, b"", retain=True)  # clear the retained capability
        with contextlib.suppress(Exception):
            self.mqtt.stop()
        log.info("worker %s stopped", self.worker_id)

    def _publish(self, job: Job | None, event: str) -> None:
        if job is not None:
            self.mqtt.publish_event(job.job_id, event, job.progress, job.updated_at or now_ms())

    def _finish(
        self,
        job_id: str,
        status: str,
        *,
        task_output: dict[str, object] | None = None,
        error_message: str | None = None,
        publish: bool = True,
    ) -> None:
        done = self.store.finish_job(
            job_id, self.worker_id, status=status, task_output=task_output, error_message=error_message
        )
        if publish:
            self._publish(done, status)

    def _run_job(self, job: Job) -> None:
        s = self.settings
        self.current_job = job.job_id
        self._set_idle(False)
        self._publish(job, "processing")
        job_dir = self.store.job_dir(job.job_id)
        assert self.executor is not None
        executor = self.executor
        start = time.monotonic()
        deadline = start + s.job_time_limit
        last_check = start
        last_progress_store = 0.0
        pending_progress: int | None = None
        last_progress = job.progress
        cancel_deadline: float | None = None
        abandon_deadline: float | None = None
        restart = False
        failure: str | None = None
        executor.conn.send((job.job_id, job.task_type, str(job_dir), job.params, s.job_time_limit))
        while True:
            now = time.monotonic()
            msg: _ExecutorMessage | tuple[Literal["died"]] | None = None
            if executor.conn.poll(max(0.0, min(0.05, deadline - now))):
                try:
                    msg = executor.conn.recv()
                except (EOFError, OSError):
                    msg = ("died",)
            elif not executor.process.is_alive():
                msg = ("died",)
            now = time.monotonic()
            if msg is not None:
                if msg[0] == "progress":
                    pending_progress = int(msg[1])
                elif msg[0] == "done":
                    output = msg[1]
                    try:
                        json.dumps(output)
                    except (TypeError, ValueError) as exc:
                        self._finish(job.job_id, "error", error_message=f"task_output is not JSON: {exc}")
                    else:
                        self._finish(job.job_id, "completed", task_output=output)
                    break
                elif msg[0] == "error":  # the plugin raised: upstream's ComputeModule.execute hides it from MQTT
                    silent = quirks().silent_failures
                    self._finish(job.job_id, "error", error_message=str(msg[1]), publish=not silent)
                    break
                elif msg[0] == "cancelled":
                    log.info("job %s cancelled", job.job_id)
                    break
                elif msg[0] == "died":
                    executor.process.join(1)
                    why = _describe_exit(executor.process.exitcode)
                    failure = f"Worker {self.worker_id}: the job process died ({why}) while running this job"
                    restart = True
                    break
            if pending_progress is not None and pending_progress != last_progress and now - last_progress_store >= 0.2:
                last_progress = min(99, pending_progress)
                pending_progress = None
                last_progress_store = now
                stored = self.store.set_progress(job.job_id, self.worker_id, last_progress, s.lease_ms)
                if stored and not quirks().no_progress_events:  # upstream stores progress but publishes nothing
                    self.mqtt.publish_event(job.job_id, "processing", last_progress, now_ms())
            if now >= deadline:
                restart = True
                failure = (
                    f"Job exceeded the time limit of {s.job_time_limit:g} s on worker {self.worker_id} and was stopped"
                )
                break
            if now - last_check >= 0.25:
                last_check = now
                current = self.store.get_job(job.job_id)
                if job_was_cancelled(current, self.worker_id):
                    if cancel_deadline is None:
                        cancel_deadline = now + s.cancel_grace
                elif now - start > s.heartbeat_interval:
                    self.store.extend_lease(job.job_id, self.worker_id, s.lease_ms)
            if cancel_deadline is not None and now >= cancel_deadline:
                log.info("job %s cancelled; stopping its process", job.job_id)
                restart = True
                break
            if self._stop.is_set() and abandon_deadline is None:
                abandon_deadline = now + s.shutdown_grace
            if abandon_deadline is not None and (now >= abandon_deadline or self._abandon.is_set()):
                failure = f"Worker {self.worker_id} shut down before finishing this job"
                restart = True
                break
        if restart:
            executor.kill()  # the whole process group, before the outcome is published
            self.executor = None
        if failure is not None:
            self._finish(job.job_id, "error", error_message=failure)
        if not self.store.job_exists(job.job_id):
            shutil.rmtree(job_dir, ignore_errors=True)  # deleted meanwhile: drop what the plugin wrote
        self.current_job = None
        if restart and not self._stop.is_set():
            try:
                self._start_executor()
            except RuntimeError:
                log.exception("worker %s cannot restart its executor", self.worker_id)
                self.request_stop()
                return
        self._set_idle(True)
