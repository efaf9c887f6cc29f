"""Start a whole ``cl_compute`` deployment (broker + API server + N workers) from Python or ``cl-compute up``.

Example (what the pytest plugin does)::

    from cl_compute.deployment import Deployment

    with Deployment(workers=2) as dep:            # start() blocks until everything is ready
        print(dep.server_url, dep.mqtt_url)        # http://127.0.0.1:PORT, mqtt://127.0.0.1:PORT
        print(dep.worker_ids, dep.startup_seconds)
    # stop(): workers finish/abandon their job and clear their retained capability message, then the API
    # server and the broker stop; a temporary data directory is removed (and if the caller is SIGKILLed before
    # that, the next start() on the machine removes it: sweep_stale_tmp_dirs).

Every process is a child of the caller, in its own session, and receives SIGTERM when the caller dies
(``PR_SET_PDEATHSIG``), so nothing is orphaned even after ``kill -9`` of the caller. Call ``start()`` from a
thread that outlives the deployment (normally the main thread): Linux ties the death signal to that thread.

Workers are supervised (``restart_workers``, on by default): a thread of the caller notices a worker process
that died (a crash, ``kill -9``, the OOM killer), logs it and starts it again with the same id after a back-off
(0.5 s, doubling), at most ``WORKER_RESTART_LIMIT`` times within ``WORKER_RESTART_WINDOW`` seconds; after that
it logs an error and leaves the worker stopped. The jobs the dead worker held end ``error`` as before (its last
will); the restart waits until the API has ended them, so a job of the new incarnation is never mistaken for
one of the dead one. ``kill_worker()`` (for worker-death tests) stops a worker *without* a restart.

The broker the deployment started is supervised too (``restart_broker``, on by default): when it dies, the same
thread logs it and starts a broker of the same kind on the same port after a back-off (0.5 s, doubling, at most
8 s; it keeps trying, since nothing works without it). The API and the workers reconnect by themselves and
subscribe again on every connect, so job events and worker announcements flow again; while the broker is down
the API does not wait for acknowledgements it cannot get.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, cast

import httpx

from cl_compute.broker import AMQTT_DIR_PREFIX, MOSQUITTO_DIR_PREFIX, Broker, port_in_use, start_broker, url_host
from cl_compute.owned_tmp import make_owned_tmp_dir, sweep_owned_tmp_dirs
from cl_compute.plugins import EXTRA_PLUGINS_ENV, format_extra_plugins, parse_extra_plugins
from cl_compute.profile import FIXED, PROFILE_ENV, check_profile
from cl_compute.store import JobStore
from cl_compute.worker import set_pdeathsig

log = logging.getLogger(__name__)

#: a dead worker is restarted at most this many times within ``WORKER_RESTART_WINDOW`` seconds, then left stopped
WORKER_RESTART_LIMIT = 5
WORKER_RESTART_WINDOW = 60.0
#: back-off before the n-th restart within the window: ``FIRST * 2**(n-1)`` seconds, at most ``MAX``
WORKER_RESTART_BACKOFF_FIRST = 0.5
WORKER_RESTART_BACKOFF_MAX = 8.0


#: Prefixes of the temporary folders a deployment makes (data, logs, the auth key). The name goes on with the
#: owning process (``cl_compute.owned_tmp``), then mkdtemp's random part: nothing is added inside.
TMP_PREFIXES = ("cl-compute-data-", "cl-compute-logs-", "cl-compute-key-", MOSQUITTO_DIR_PREFIX, AMQTT_DIR_PREFIX)


def sweep_stale_tmp_dirs(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the temporary folders of deployments whose owning process is gone.

    ``stop()`` removes a deployment's folders, but a caller killed with SIGKILL (or by the OOM killer) never
    runs it: its children die with it (``PR_SET_PDEATHSIG``) and its folders stayed. Every ``start()`` calls
    this, so they go on the next start. Folders of live processes, and folders whose name names no owner (made
    by an older version), are left alone; so is everything where ``/proc`` cannot tell who is alive.

    Args:
        root: the folder to look in (default: the system temporary folder).

    Returns:
        the folders removed.
    """
    removed = sweep_owned_tmp_dirs(TMP_PREFIXES, root)
    for folder in removed:
        log.info("removed %s, left by a process that is gone", folder)
    return removed


class DeploymentError(RuntimeError):
    """The deployment could not start (the message names the failing part and the tail of its log)."""


class PortInUseError(DeploymentError):
    """A port asked for explicitly (no fallback) is already in use.

    Attributes:
        part: ``"API server"`` or ``"MQTT broker"``.
        host: the interface.
        port: the port that is taken.
    """

    def __init__(self, part: str, host: str, port: int) -> None:
        super().__init__(f"port {port} is in use: the {part} cannot listen on {_host_port(host, port)}")
        self.part = part
        self.host = host
        self.port = port


@dataclass(frozen=True)
class PortFallback:
    """A wanted port was taken, so a free one is used instead (``port_fallback`` / ``mqtt_port_fallback``).

    Attributes:
        part: ``"API server"`` or ``"MQTT broker"``.
        host: the interface.
        requested: the port that was taken.
        used: the free port used instead.
    """

    part: str
    host: str
    requested: int
    used: int


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _child_preexec() -> None:
    set_pdeathsig(signal.SIGTERM)


class Deployment:
    """A running ``cl_compute`` deployment: MQTT broker, API server and worker processes.

    Args:
        workers: number of worker processes (None = number of CPU cores).
        data_dir: shared data directory; None = a temporary directory removed by ``stop()``.
        mqtt_url: use this broker (``mqtt://host:port``) instead of starting one.
        auth_public_key: ES256 public key (PEM text, bytes, or a path to a PEM file) to turn auth on.
        tasks: task types the workers serve (None = every registered plugin whose backend loads).
        host: interface of the API server and of the broker started here (``0.0.0.0``: every IPv4 interface,
            ``::``: every interface; the URLs name a loopback address then).
        port: API port (0 = a free port). Taken: ``PortInUseError``, unless ``port_fallback``.
        mqtt_port: port of the broker started here (0 = a free port; ignored with ``mqtt_url``). Taken:
            ``PortInUseError``, unless ``mqtt_port_fallback``. The broker listens on ``host``, like the API.
        port_fallback: when ``port`` is taken, use a free port instead (recorded in ``port_fallbacks``).
        mqtt_port_fallback: when ``mqtt_port`` is taken, use a free port instead (recorded in ``port_fallbacks``).
        extra_plugins: extra task types ``{"sleep": "pkg.mod:SleepPlugin" or "/path/file.py:SleepPlugin"}``,
            registered in every process (via ``CL_COMPUTE_EXTRA_PLUGINS``).
        broker: ``"auto"`` (mosquitto if installed, else amqtt), ``"mosquitto"`` or ``"amqtt"``.
        job_time_limit: seconds a job may run before it ends ``error``.
        heartbeat_interval: worker capability heartbeat in seconds (the job lease is 3x this).
        guest_mode: initial guest mode when auth is on (default off); ignored without a key.
        log_level: log level of the child processes.
        log_dir: where child logs go (``api.log``, ``worker-<id>.log``); None = a temporary directory removed
            by ``stop()``; ``"-"`` = inherit the caller's stdout/stderr.
        startup_timeout: seconds ``start()`` waits for readiness (model loading included).
        env: extra environment variables for the child processes.
        worker_shutdown_grace: seconds a worker may spend finishing its job on ``stop()``.
        max_upload_mb: the API's upload limit in MiB (``--max-upload-mb``; 0 = no limit); None = the API's
            default, or ``CL_COMPUTE_MAX_UPLOAD_MB`` when set.
        restart_workers: restart a worker process that died (see the module documentation).
        restart_broker: restart the broker started here when it died, on the same port (module documentation).
        profile: behaviour profile of every process (``cl_compute.profile``): ``"fixed"`` (every [fix] of
            PROTOCOL.md) or ``"upstream-2026-01"`` (upstream's quirks); None = ``CL_COMPUTE_PROFILE`` of the
            environment (``env`` included), else ``"fixed"``. Unknown names raise ``UnknownProfileError``.

    Attributes (after ``start()``):
        server_url: ``http://host:port`` of the API (127.0.0.1 / ::1 when ``host`` is 0.0.0.0 / ::).
        mqtt_url: ``mqtt://host:port`` of the broker (likewise).
        data_dir: the data directory (a ``Path``).
        worker_ids: ids of the worker processes.
        worker_pids: worker id -> pid of its supervisor process (the current one after a restart).
        worker_restarts: worker id -> how many times it was restarted.
        broker_restarts: how many times the broker started here was restarted.
        broker_pid: pid of the broker started here (the current one after a restart; 0 with ``mqtt_url``).
        api_pid: pid of the API server process.
        broker_kind: ``"mosquitto"``, ``"amqtt"`` or ``"external"``.
        startup_seconds: wall time ``start()`` took until everything was ready.
        log_dir: directory of the child logs (None when inherited).
        port_fallbacks: a ``PortFallback`` for each wanted port that was taken (empty when none was).
    """

    def __init__(
        self,
        workers: int | None = 2,
        data_dir: str | os.PathLike[str] | None = None,
        mqtt_url: str | None = None,
        auth_public_key: str | bytes | os.PathLike[str] | None = None,
        tasks: Sequence[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        mqtt_port: int = 0,
        port_fallback: bool = False,
        mqtt_port_fallback: bool = False,
        extra_plugins: Mapping[str, str] | None = None,
        broker: str = "auto",
        job_time_limit: float = 600.0,
        heartbeat_interval: float = 10.0,
        guest_mode: bool | None = None,
        log_level: str = "WARNING",
        log_dir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 120.0,
        env: Mapping[str, str] | None = None,
        worker_shutdown_grace: float = 5.0,
        max_upload_mb: int | None = None,
        restart_workers: bool = True,
        profile: str | None = None,
        restart_broker: bool = True,
    ) -> None:
        self.num_workers = workers if workers is not None else (os.cpu_count() or 1)
        if self.num_workers < 0:
            raise ValueError("workers must be >= 0")
        self._data_dir_arg = Path(data_dir) if data_dir is not None else None
        self._mqtt_url_arg = mqtt_url
        self._auth_public_key = auth_public_key
        self.tasks = list(tasks) if tasks is not None else None
        self.host = host
        self.port = port
        self.mqtt_port = mqtt_port
        self.port_fallback = port_fallback
        self.mqtt_port_fallback = mqtt_port_fallback
        self.extra_plugins = dict(extra_plugins or {})
        self.broker_pref = broker
        self.job_time_limit = job_time_limit
        self.heartbeat_interval = heartbeat_interval
        self.guest_mode = guest_mode
        self.log_level = log_level
        self._log_dir_arg = log_dir
        self.startup_timeout = startup_timeout
        self.env = dict(env or {})
        self.worker_shutdown_grace = worker_shutdown_grace
        if max_upload_mb is not None and max_upload_mb < 0:
            raise ValueError("max_upload_mb must be >= 0")
        self.max_upload_mb = max_upload_mb
        self.restart_workers = restart_workers
        self.restart_broker = restart_broker
        self.broker_restarts = 0
        self._broker_deaths: deque[float] = deque()
        self._broker_restart_at: float | None = None
        chosen = profile if profile is not None else (self.env.get(PROFILE_ENV) or os.environ.get(PROFILE_ENV))
        #: the behaviour profile of the deployment's processes
        self.profile = check_profile(chosen or FIXED)
        #: restarts of one worker allowed within ``worker_restart_window`` seconds (set before ``start()``)
        self.worker_restart_limit = WORKER_RESTART_LIMIT
        self.worker_restart_window = WORKER_RESTART_WINDOW

        self.server_url = ""
        self.mqtt_url = ""
        self.data_dir = Path()
        self.worker_ids: list[str] = []
        self.worker_pids: dict[str, int] = {}
        self.worker_restarts: dict[str, int] = {}
        self.api_pid = 0
        self.broker_kind = ""
        self.startup_seconds = 0.0
        self.log_dir: Path | None = None
        self.port_fallbacks: list[PortFallback] = []

        self._api_sock: socket.socket | None = None
        self._broker: Broker | None = None
        self._api: subprocess.Popen[bytes] | None = None
        self._workers: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []
        self._tmp_dirs: list[Path] = []
        self._started = False
        self._worker_cmd: dict[str, list[str]] = {}
        self._env: dict[str, str] = {}
        self._procs_lock = threading.Lock()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._supervisor_idle = threading.Event()  # the supervisor stopped acting (set after _stopping)
        self._supervisor_release = threading.Event()  # the workers are stopped: the supervisor thread may end
        self._no_restart: set[str] = set()

    # -- helpers ----------------------------------------------------------------------------------------

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        extra = parse_extra_plugins(env.get(EXTRA_PLUGINS_ENV, ""))
        extra.update(self.extra_plugins)
        if extra:
            env[EXTRA_PLUGINS_ENV] = format_extra_plugins(extra)
        env["PYTHONUNBUFFERED"] = "1"
        env[PROFILE_ENV] = self.profile
        return env

    def _log_file(self, name: str) -> IO[bytes] | None:
        if self.log_dir is None:
            return None
        f = open(self.log_dir / name, "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(f)
        return f

    def _log_tail(self, name: str) -> str:
        if self.log_dir is None:
            return ""
        path = self.log_dir / name
        with contextlib.suppress(OSError):
            text = path.read_text(errors="replace")
            return f"\n--- last lines of {path} ---\n" + "\n".join(text.splitlines()[-25:])
        return ""

    def _public_key_file(self) -> Path | None:
        key = self._auth_public_key
        if key is None:
            return None
        if isinstance(key, bytes):
            key = key.decode()
        if isinstance(key, str) and key.lstrip().startswith("-----BEGIN"):
            tmp = make_owned_tmp_dir("cl-compute-key-")
            self._tmp_dirs.append(tmp)
            path = tmp / "public_key.pem"
            path.write_text(key)
            return path
        path = Path(key)
        if not path.is_file():
            raise DeploymentError(f"auth public key file not found: {path}")
        return path

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> Deployment:
        """Start broker, API server and workers; block until the API answers and every worker announced.

        Returns:
            self.

        Raises:
            DeploymentError: a part failed to start or was not ready within ``startup_timeout``
                (everything already started is stopped again).
        """
        if self._started:
            raise DeploymentError("deployment already started")
        self._started = True
        t0 = time.monotonic()
        try:
            self._start(t0)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        atexit.register(self.stop)
        return self

    def _start(self, t0: float) -> None:
        sweep_stale_tmp_dirs()  # what a SIGKILLed earlier caller left
        if self._data_dir_arg is None:
            self.data_dir = make_owned_tmp_dir("cl-compute-data-")
            self._tmp_dirs.append(self.data_dir)
        else:
            self.data_dir = self._data_dir_arg.resolve()
            self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._log_dir_arg is None:
            self.log_dir = make_owned_tmp_dir("cl-compute-logs-")
            self._tmp_dirs.append(self.log_dir)
        elif str(self._log_dir_arg) == "-":
            self.log_dir = None
        else:
            self.log_dir = Path(self._log_dir_arg)
            self.log_dir.mkdir(parents=True, exist_ok=True)
        key_file = self._public_key_file()

        # API server on a socket bound here (first, so a taken port fails before anything starts) and handed
        # over to the server process: no port race.
        sock = self._api_sock = self._bind_api_socket()
        self.server_url = f"http://{url_host(self.host)}:{sock.getsockname()[1]}"

        if self._mqtt_url_arg is not None:
            self.mqtt_url = self._mqtt_url_arg
            self.broker_kind = "external"
            own_broker = False
        else:
            self._broker = self._start_broker()
            self.mqtt_url = self._broker.url
            self.broker_kind = self._broker.kind
            own_broker = True

        env = self._child_env()
        py = [sys.executable, "-m", "cl_compute.cli"]
        cmd = [
            *py,
            "serve",
            "--fd",
            str(sock.fileno()),
            "--data-dir",
            str(self.data_dir),
            "--mqtt",
            self.mqtt_url,
            "--log-level",
            self.log_level,
        ]
        if key_file is not None:
            cmd += ["--auth-public-key", str(key_file)]
        if self.guest_mode is not None:
            cmd.append("--guest-mode" if self.guest_mode else "--no-guest-mode")
        if self.max_upload_mb is not None:
            cmd += ["--max-upload-mb", str(self.max_upload_mb)]
        api_log = self._log_file("api.log")
        try:
            self._api = subprocess.Popen(
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=api_log,
                stderr=subprocess.STDOUT if api_log is not None else None,
                pass_fds=(sock.fileno(),),
                start_new_session=True,
                preexec_fn=_child_preexec,
            )
        finally:
            sock.close()
            self._api_sock = None
        self.api_pid = self._api.pid

        prefix = "worker" if own_broker else f"worker-{uuid.uuid4().hex[:6]}"
        self.worker_ids = [f"{prefix}-{i + 1}" for i in range(self.num_workers)]
        for wid in self.worker_ids:
            wcmd = [
                *py,
                "worker",
                "--worker-id",
                wid,
                "--server",
                self.server_url,
                "--mqtt",
                self.mqtt_url,
                "--data-dir",
                str(self.data_dir),
                "--job-time-limit",
                str(self.job_time_limit),
                "--heartbeat-interval",
                str(self.heartbeat_interval),
                "--shutdown-grace",
                str(self.worker_shutdown_grace),
                "--log-level",
                self.log_level,
            ]
            if self.tasks is not None:
                wcmd += ["--tasks", ",".join(self.tasks)]
            self._worker_cmd[wid] = wcmd
            self._env = env
            self._spawn_worker(wid)
        self._wait_ready(t0)
        if (self.restart_workers and self.worker_ids) or (self.restart_broker and self._broker is not None):
            self._supervisor = threading.Thread(target=self._supervise, name="cl-compute-supervisor", daemon=True)
            self._supervisor.start()

    def _spawn_worker(self, wid: str) -> None:
        wlog = self._log_file(f"worker-{wid}.log")
        proc = subprocess.Popen(
            self._worker_cmd[wid],
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=wlog,
            stderr=subprocess.STDOUT if wlog is not None else None,
            start_new_session=True,
            preexec_fn=_child_preexec,
        )
        with self._procs_lock:
            self._workers[wid] = proc
            self.worker_pids[wid] = proc.pid

    # -- supervision ------------------------------------------------------------------------------------

    def _supervise(self) -> None:
        """Restart dead workers (the thread started by ``start()`` with ``restart_workers``)."""
        store: JobStore | None = None
        recent: dict[str, deque[float]] = {wid: deque() for wid in self.worker_ids}
        pending: dict[str, tuple[float, float]] = {}  # worker id -> (restart at, stop waiting for its jobs at)
        given_up: set[str] = set()
        lease = 3 * self.heartbeat_interval
        while not self._stopping.wait(0.1):
            now = time.monotonic()
            self._supervise_broker(now)
            for wid in self.worker_ids if self.restart_workers else ():
                with self._procs_lock:
                    proc = self._workers.get(wid)
                    deliberate = wid in self._no_restart
                if proc is None or deliberate or wid in given_up:
                    pending.pop(wid, None)
                    continue
                if wid in pending:
                    restart_at, jobs_deadline = pending[wid]
                    if now < restart_at:
                        continue
                    if store is None:
                        try:
                            store = JobStore(self.data_dir)
                        except Exception:
                            log.exception("the supervisor cannot open the job store")
                    # the API ends the dead worker's jobs on its last will (or at lease expiry): wait for that,
                    # so that the new incarnation's jobs (same id) are never ended in its place
                    if store is not None and now < jobs_deadline:
                        try:
                            if store.processing_jobs(wid):
                                continue
                        except Exception:
                            log.exception("the supervisor cannot read the job store")
                    del pending[wid]
                    if self._stopping.is_set():
                        break
                    try:
                        self._spawn_worker(wid)
                    except OSError as exc:
                        log.error("worker %s cannot be restarted: %s", wid, exc)
                        given_up.add(wid)
                        continue
                    self.worker_restarts[wid] = self.worker_restarts.get(wid, 0) + 1
                    log.warning("worker %s restarted (pid %d)", wid, self.worker_pids[wid])
                    continue
                code = proc.poll()
                if code is None:
                    continue
                times = recent.setdefault(wid, deque())
                while times and now - times[0] > self.worker_restart_window:
                    times.popleft()
                why = _describe_exit(code)
                if len(times) >= self.worker_restart_limit:
                    log.error(
                        "worker %s died (%s) after %d restarts within %g s; giving up, it stays stopped",
                        wid,
                        why,
                        len(times),
                        self.worker_restart_window,
                    )
                    given_up.add(wid)
                    continue
                times.append(now)
                delay = min(WORKER_RESTART_BACKOFF_MAX, WORKER_RESTART_BACKOFF_FIRST * 2.0 ** (len(times) - 1))
                log.warning(
                    "worker %s died (%s); restarting it in %g s (restart %d of at most %d within %g s)",
                    wid,
                    why,
                    delay,
                    len(times),
                    self.worker_restart_limit,
                    self.worker_restart_window,
                )
                pending[wid] = (now + delay, now + delay + lease + 5.0)
        if store is not None:
            store.close()
        self._supervisor_idle.set()
        # Restarted workers were started by this thread, and Linux sends their PR_SET_PDEATHSIG when it ends:
        # it lives on until stop() has stopped them, so that they get stop()'s one SIGTERM, not two.
        self._supervisor_release.wait()

    @property
    def broker_pid(self) -> int:
        """The pid of the broker started here (0 when the deployment uses another one)."""
        broker = self._broker
        return broker.process.pid if broker is not None else 0

    def _supervise_broker(self, now: float) -> None:
        """Restart the broker started here when it died: same kind, same port, after a back-off (supervisor)."""
        broker = self._broker
        if broker is None or not self.restart_broker or self._stopping.is_set():
            return
        port = int(broker.url.rsplit(":", 1)[1])
        if self._broker_restart_at is None:
            code = broker.process.poll()
            if code is None:
                return
            while self._broker_deaths and now - self._broker_deaths[0] > WORKER_RESTART_WINDOW:
                self._broker_deaths.popleft()
            delay = min(WORKER_RESTART_BACKOFF_MAX, WORKER_RESTART_BACKOFF_FIRST * 2.0 ** len(self._broker_deaths))
            self._broker_deaths.append(now)
            log.warning(
                "MQTT broker (%s, port %d) died (%s); restarting it on the same port in %g s",
                broker.kind,
                port,
                _describe_exit(code),
                delay,
            )
            self._broker_restart_at = now + delay
            return
        if now < self._broker_restart_at:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):  # what is left of its group (mosquitto
            os.killpg(broker.process.pid, signal.SIGKILL)  # outlives a killed watchdog): the port must be free
        broker.stop()  # reaps it and removes its working folder
        try:
            new = start_broker(prefer=broker.kind, host=self.host, port=port, preexec_fn=_child_preexec)
        except Exception as exc:
            log.error(
                "MQTT broker cannot be restarted on port %d: %s; trying again in %g s",
                port,
                exc,
                WORKER_RESTART_BACKOFF_MAX,
            )
            self._broker_restart_at = now + WORKER_RESTART_BACKOFF_MAX
            return
        with self._procs_lock:
            self._broker = new
        self._broker_restart_at = None
        self.broker_restarts += 1
        log.warning("MQTT broker restarted on port %d (pid %d)", port, new.process.pid)

    def _bind_api_socket(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            try:
                sock.bind((self.host, self.port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or self.port == 0:
                    raise DeploymentError(
                        f"cannot bind the API server to {_host_port(self.host, self.port)}: {exc}"
                    ) from exc
                if not self.port_fallback:
                    raise PortInUseError("API server", self.host, self.port) from exc
                sock.bind((self.host, 0))
                bound = cast("int", sock.getsockname()[1])  # (host, port[, flowinfo, scope_id]); typeshed: Any
                self.port_fallbacks.append(PortFallback("API server", self.host, self.port, bound))
            sock.listen(512)
        except BaseException:
            sock.close()
            raise
        return sock

    def _start_broker(self) -> Broker:
        host = self.host  # the API's interface: a client that reaches the API reaches the broker too
        wanted = self.mqtt_port or None
        if wanted is not None and port_in_use(wanted, host):
            if not self.mqtt_port_fallback:
                raise PortInUseError("MQTT broker", host, wanted)
            wanted = None
        try:
            broker = start_broker(prefer=self.broker_pref, host=host, port=wanted, preexec_fn=_child_preexec)
        except Exception as exc:
            # taken between the check and the broker's bind: the same answer as if it had been taken before
            if wanted is None or not port_in_use(wanted, host):
                raise DeploymentError(f"cannot start an MQTT broker: {exc}") from exc
            if not self.mqtt_port_fallback:
                raise PortInUseError("MQTT broker", host, wanted) from exc
            try:
                broker = start_broker(prefer=self.broker_pref, host=host, preexec_fn=_child_preexec)
            except Exception as exc2:
                raise DeploymentError(f"cannot start an MQTT broker: {exc2}") from exc2
        used = int(broker.url.rsplit(":", 1)[1])
        if self.mqtt_port and used != self.mqtt_port:
            self.port_fallbacks.append(PortFallback("MQTT broker", host, self.mqtt_port, used))
        return broker

    def _check_alive(self) -> None:
        if self._api is not None and self._api.poll() is not None:
            raise DeploymentError(
                f"the API server exited with status {self._api.returncode} during start-up{self._log_tail('api.log')}"
            )
        for wid, proc in self._workers.items():
            if proc.poll() is not None:
                raise DeploymentError(
                    f"worker {wid} exited with status {proc.returncode} during start-up"
                    f"{self._log_tail(f'worker-{wid}.log')}"
                )

    def _wait_ready(self, t0: float) -> None:
        deadline = t0 + self.startup_timeout
        with httpx.Client(base_url=self.server_url, timeout=2.0) as http:
            while True:
                self._check_alive()
                if time.monotonic() > deadline:
                    raise DeploymentError(
                        f"the API server at {self.server_url} did not answer within {self.startup_timeout:g} s"
                        f"{self._log_tail('api.log')}"
                    )
                try:
                    if http.get("/").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
            expected = set(self.worker_ids)
            while True:
                self._check_alive()
                try:
                    # /internal/workers: {"workers": {worker id: capability payload}}
                    answer = cast("dict[str, dict[str, object]]", http.get("/internal/workers").json())
                    seen = set(answer["workers"])
                except (httpx.TransportError, ValueError, KeyError):
                    seen: set[str] = set()
                if expected <= seen:
                    return
                if time.monotonic() > deadline:
                    missing = sorted(expected - seen)
                    raise DeploymentError(
                        f"workers {missing} did not announce their capabilities within {self.startup_timeout:g} s"
                        f"{self._log_tail(f'worker-{missing[0]}.log')}"
                    )
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop workers (they finish or abandon their job and clear their retained message), API, broker.

        Idempotent; never raises for processes that are already gone.
        """
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor_idle.wait(10)
        grace = self.worker_shutdown_grace + 5
        for proc in self._workers.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self._workers.values():
            _wait_or_kill(proc, deadline)
        self._workers.clear()
        self._supervisor_release.set()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(10)
            self._supervisor = None
        if self._api is not None:
            if self._api.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self._api.send_signal(signal.SIGTERM)
            _wait_or_kill(self._api, time.monotonic() + 10)
            self._api = None
        if self._api_sock is not None:
            self._api_sock.close()
            self._api_sock = None
        if self._broker is not None:
            self._broker.stop()
            self._broker = None
        for f in self._logs:
            with contextlib.suppress(Exception):
                f.close()
        self._logs.clear()
        for d in self._tmp_dirs:
            shutil.rmtree(d, ignore_errors=True)
        self._tmp_dirs.clear()

    def kill_worker(self, worker_id: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (default SIGKILL) to one worker's supervisor and reap it (for worker-death tests).

        The worker is not restarted afterwards; to see a restart, kill ``worker_pids[worker_id]`` directly.
        """
        with self._procs_lock:
            self._no_restart.add(worker_id)
            proc = self._workers[worker_id]
        proc.send_signal(sig)
        proc.wait(10)

    def __enter__(self) -> Deployment:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"Deployment(server_url={_redact_url(self.server_url)!r}, mqtt_url={_redact_url(self.mqtt_url)!r}, "
            f"workers={self.worker_ids!r}, data_dir={str(self.data_dir)!r})"
        )


def _redact_url(url: str) -> str:
    """``url`` with the password of its user part replaced (``mqtt://u:***@host``); cl_compute does not import
    cl_client's internals, so this is its own small copy of ``cl_client._config.redact_url``."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{hostpart}"


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _wait_or_kill(proc: subprocess.Popen[bytes], deadline: float) -> None:
    try:
        proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
