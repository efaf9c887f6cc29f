"""``ComputeClient`` (sync) and ``AsyncComputeClient`` (async): the same methods over one shared core.

Request building and parsing live in ``_api``; HTTP I/O in ``_http``; MQTT in ``_mqtt``; job tracking
(callbacks, confirmation GETs, the polling fallback) in ``_tracker``. Each client method is one call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Generic, Self, TypeVar

import httpx

from cl_client import _api
from cl_client._auth import AuthProvider, JWTAuthProvider, NoAuthProvider
from cl_client._config import ComputeClientConfig, redact_url, resolve_config
from cl_client._core import Request, Upload, job_file_path
from cl_client._exceptions import (
    ComputeClientError,
    ConfigurationError,
    HTTPStatusError,
    JobFailedError,
    WorkerUnavailableError,
)
from cl_client._http import AsyncHTTP, SyncHTTP, download_target, removing_created_folders
from cl_client._models import (
    CleanupResult,
    GuestModeConfig,
    GuestModeRoutes,
    HealthResponse,
    JobResponse,
    StatusText,
    StorageInfo,
    WorkerCapabilitiesResponse,
    WorkerCapability,
)
from cl_client._mqtt import MqttMonitor
from cl_client._tracker import JobCallback, JobTracker
from cl_client.plugins import AsyncPlugins, JobFiles, SyncPlugins

if TYPE_CHECKING:
    from cl_client.compute_client import ComputeClient as UpstreamComputeClient
    from cl_client.server_config import ServerConfig
    from cl_client.server_pref import ServerPref

log = logging.getLogger("cl_client")
T = TypeVar("T")
PathLike = str | Path


def _auth_from(config: ComputeClientConfig, auth_provider: AuthProvider | None) -> AuthProvider:
    if auth_provider is not None:
        return auth_provider
    if config.username and config.password:
        return JWTAuthProvider(
            config.token,
            username=config.username,
            password=config.password,
            auth_url=config.auth_url,
            refresh_margin=config.token_refresh_margin,
            timeout=config.timeout,
        )
    if config.token:
        return JWTAuthProvider(config.token)
    return NoAuthProvider()


TransportT = TypeVar("TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)


class WorkersReady(dict[str, WorkerCapability]):
    """What ``wait_for_workers`` returns: the live workers by id, and always true.

    The wait succeeded when it returns (it raises ``WorkerUnavailableError`` otherwise), so the value is
    truthy even when no worker id is known (MQTT off: the capabilities came from ``GET /capabilities``);
    upstream code written as ``if await client.wait_for_workers([...]):`` keeps working.

    Attributes:
        capabilities: task type -> idle workers from ``GET /capabilities`` when it was asked (else empty).
    """

    def __init__(self, workers: Mapping[str, WorkerCapability], capabilities: Mapping[str, int] | None = None) -> None:
        super().__init__(workers)
        self.capabilities: dict[str, int] = dict(capabilities or {})

    def __bool__(self) -> bool:
        """Always True: returning at all means every wanted capability has a worker."""
        return True


def _upstream_urls(
    server_url: str | None,
    mqtt_url: str | None,
    auth_url: str | None,
    server_pref: ServerPref | None,
    server_config: ServerConfig | None,
    mqtt_broker: str | None,
    mqtt_port: int | None,
) -> tuple[str | None, str | None, str | None]:
    """Apply upstream's keywords: explicit URLs first, then ``mqtt_broker``/``mqtt_port``, then the
    ``server_pref`` (``ServerPref``) or ``server_config`` (January 2026 ``ServerConfig``) values."""
    if server_url is None:
        server_url = (server_pref.compute_url if server_pref else None) or (
            server_config.compute_url if server_config else None
        )
    if auth_url is None:
        auth_url = (server_pref.auth_url if server_pref else None) or (
            server_config.auth_url if server_config else None
        )
    if mqtt_url is None and (mqtt_broker is not None or mqtt_port is not None):
        host = mqtt_broker or (server_config.mqtt_broker if server_config else "localhost")
        port = mqtt_port or (server_config.mqtt_port if server_config else 1883)
        mqtt_url = f"mqtt://{host}:{port}"
    if mqtt_url is None and server_pref is not None:
        mqtt_url = server_pref.mqtt_url
    if mqtt_url is None and server_config is not None:
        mqtt_url = f"mqtt://{server_config.mqtt_broker}:{server_config.mqtt_port}"
    return server_url, mqtt_url, auth_url


class _ClientCore(Generic[TransportT]):
    """State, construction and the I/O-free methods shared by both clients."""

    config: ComputeClientConfig
    auth: AuthProvider
    monitor: MqttMonitor | None
    _tracker: JobTracker | None

    def __init__(
        self,
        server_url: str | None = None,
        *,
        mqtt_url: str | None = None,
        auth_url: str | None = None,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float | None = None,
        auth_provider: AuthProvider | None = None,
        config: ComputeClientConfig | None = None,
        transport: TransportT | None = None,
        base_url: str | None = None,
        server_pref: ServerPref | None = None,
        mqtt_broker: str | None = None,
        mqtt_port: int | None = None,
        server_config: ServerConfig | None = None,
    ) -> None:
        server, mqtt, auth = _upstream_urls(
            server_url or base_url, mqtt_url, auth_url, server_pref, server_config, mqtt_broker, mqtt_port
        )
        resolved = resolve_config(
            server_url=server,
            mqtt_url=mqtt,
            auth_url=auth,
            token=token,
            username=username,
            password=password,
            timeout=timeout,
            base=config,
        )
        self._setup(resolved, _auth_from(resolved, auth_provider), transport, None)

    def _setup(
        self,
        config: ComputeClientConfig,
        auth: AuthProvider,
        transport: TransportT | None,
        monitor: MqttMonitor | None,
    ) -> None:
        """Finish construction from resolved settings (``monitor``: one handed over by another client)."""
        self.config = config
        self.auth = auth
        settings = config.mqtt
        if monitor is None and settings is not None:
            monitor = MqttMonitor(settings, config)
            monitor.start()  # connects in the background; submit waits for it (bounded)
        self.monitor = monitor
        self._tracker = None
        self._closed = False
        self._make_http(transport)

    def _make_http(self, transport: TransportT | None) -> None:
        """Create ``self._http`` (the sync or async transport of the client)."""
        raise NotImplementedError  # pragma: no cover - each client provides it

    def __repr__(self) -> str:
        mqtt = self.config.mqtt
        return (
            f"{type(self).__name__}(server_url={redact_url(self.config.base_url)!r}, "
            f"mqtt_url={mqtt.url if mqtt else None!r}, auth={self.auth!r})"
        )

    # -- shared helpers ------------------------------------------------------------------------------
    @property
    def tracker(self) -> JobTracker:
        """The job tracker (callbacks, waits, polling fallback); created on first use."""
        raise NotImplementedError  # pragma: no cover - each client provides it

    def _events_ready(self) -> bool:
        """Make sure the event subscriptions exist before a job is submitted (bounded wait, once)."""
        return self.monitor.wait_ready() if self.monitor is not None else False

    def _watch_new_job(
        self, job_id: str, task_type: str, on_progress: JobCallback | None, on_complete: JobCallback | None
    ) -> None:
        if on_progress is not None or on_complete is not None:
            self.tracker.subscribe(
                job_id, task_type=task_type, on_progress=on_progress, on_complete=on_complete, status="queued"
            )
        else:
            self.tracker.track(job_id, task_type, status="queued")

    def _upload(self, file: PathLike, filename: str | None) -> Upload:
        return Upload.from_path(file, filename)

    # -- job files for typed results (plugin clients) -------------------------------------------------
    @staticmethod
    def _read_file_call(job_id: str, file_path: str, timeout: float | None) -> _api.Call[bytes]:
        request = Request("GET", job_file_path(job_id, file_path), job_id=job_id, timeout=timeout)
        return _api.Call(request, lambda response: response.content)

    def _sync_files(self, http: SyncHTTP, job_id: str) -> tuple[Callable[[str], bytes], Callable[[str, Path], Path]]:
        def read(path: str) -> bytes:
            call = self._read_file_call(job_id, path, None)
            return call.parse(http.send(call.request))

        def save(path: str, dest: Path) -> Path:
            request = Request("GET", job_file_path(job_id, path), job_id=job_id)
            return http.download(request, download_target(dest, path))

        return read, save

    # -- MQTT-side API (sync in both clients: nothing here does I/O) ---------------------------------
    def subscribe_job_updates(
        self,
        job_id: str,
        on_progress: JobCallback | None = None,
        on_complete: JobCallback | None = None,
        task_type: str = "unknown",
    ) -> str:
        """Call ``on_progress(job)`` on every update and ``on_complete(job)`` once when the job ends.

        Callbacks may be plain functions or coroutine functions (run on the loop that was running when
        they were registered). ``on_complete`` receives the record confirmed by ``GET /jobs/{id}``, for
        ``completed`` and for ``error``; nothing fires after it. If events stop (a broker outage, or an
        upstream failure that publishes nothing), the job is polled. Exceptions in callbacks are logged.

        Args:
            job_id: the job to watch.
            on_progress: called with a JobResponse per event (synthetic: status and progress only).
            on_complete: called once with the final JobResponse.
            task_type: the job's task type (for the synthetic records).

        Returns:
            A subscription id for ``unsubscribe``.
        """
        self._events_ready()
        return self.tracker.subscribe(job_id, task_type=task_type, on_progress=on_progress, on_complete=on_complete)

    def mqtt_subscribe_job_updates(
        self,
        job_id: str,
        on_progress: JobCallback | None = None,
        on_complete: JobCallback | None = None,
        task_type: str = "unknown",
    ) -> str:
        """Alias of ``subscribe_job_updates`` (the newer upstream SDK's name)."""
        return self.subscribe_job_updates(job_id, on_progress, on_complete, task_type)

    def unsubscribe(self, subscription_id: str) -> bool:
        """Remove a subscription. Returns False when it was unknown or its job already finished."""
        return self.tracker.unsubscribe(subscription_id)

    def workers(self) -> dict[str, WorkerCapability]:
        """The live workers by id, from retained capability messages (empty without MQTT)."""
        return self.monitor.workers() if self.monitor is not None else {}

    def _missing_from_capabilities(self, wanted: set[str], caps: WorkerCapabilitiesResponse) -> set[str]:
        return {c for c in wanted if c not in caps.capabilities}

    def _worker_error(self, missing: set[str], available: Mapping[str, int]) -> WorkerUnavailableError:
        ordered = sorted(missing)
        return WorkerUnavailableError(ordered[0], dict(sorted(available.items())), ordered)

    def _available(self) -> dict[str, int]:
        """Capability -> idle workers offering it, from the retained capability messages."""
        have: dict[str, int] = {}
        for cap in self.workers().values():
            for name in cap.capabilities:
                have[name] = have.get(name, 0) + cap.idle_count
        return have

    @staticmethod
    def _wanted(capabilities: Iterable[str] | None, required_capabilities: Iterable[str] | None) -> set[str]:
        if capabilities is not None and required_capabilities is not None:
            raise ConfigurationError("give capabilities or required_capabilities, not both")
        chosen = capabilities if capabilities is not None else required_capabilities
        if isinstance(chosen, str):
            raise ConfigurationError(f"capabilities must be a list of task types, got the string {chosen!r}")
        return set(chosen or ())


class ComputeClient(_ClientCore[httpx.BaseTransport], SyncPlugins):
    """Sync client for a CL compute deployment (context manager).

    Args:
        server_url: compute API URL (``base_url`` is accepted as an alias, as in upstream's SDK).
        mqtt_url: broker URL (``mqtt://[user:pass@]host:port``, ``mqtts://`` for TLS; ``""``/``"off"``
            disables MQTT and the client works by polling).
        auth_url: auth service URL (for logging in with ``username``/``password``).
        token: a static JWT.
        username: user name for the auth service.
        password: password for the auth service.
        timeout: default HTTP timeout in seconds.
        auth_provider: a custom ``AuthProvider`` (overrides token/username/password).
        config: a ``ComputeClientConfig`` whose values are the defaults for the arguments above.
        transport: an httpx transport (tests only: ``httpx.MockTransport``).
        base_url: alias of ``server_url``.
        server_pref: upstream's ``ServerPref``: its URLs are used for those not given.
        mqtt_broker: upstream's (January 2026) broker host; with ``mqtt_port`` it makes ``mqtt_url``.
        mqtt_port: upstream's (January 2026) broker port.
        server_config: upstream's January 2026 ``ServerConfig`` (as ``server_pref``).

    Settings not given are read from the environment (``CL_SERVER_URL``, ``CL_MQTT_URL``, ... and upstream's
    ``COMPUTE_URL``, ``MQTT_URL``, ``AUTH_URL``, ``MQTT_BROKER``/``MQTT_PORT``), then the defaults of
    ``ComputeClientConfig``.

    ``async with ComputeClient(...) as client`` (upstream's SDK was async) gives an async client with the same
    settings, ``cl_client.compute_client.ComputeClient`` (an ``AsyncComputeClient``); this object hands it
    its broker connection and is closed.

    Raises:
        ConfigurationError: an invalid URL or setting.
    """

    _http: SyncHTTP
    _transport: httpx.BaseTransport | None
    _async_twin: AsyncComputeClient | None = None

    def _make_http(self, transport: httpx.BaseTransport | None) -> None:
        self._transport = transport
        self._http = SyncHTTP(self.config, self.auth, transport)

    def _call(self, call: _api.Call[T]) -> T:
        return call.parse(self._http.send(call.request))

    def _fetch_for_tracker(self, job_id: str) -> JobResponse:
        return self._call(_api.get_job(job_id))

    @property
    def tracker(self) -> JobTracker:
        """The job tracker (callbacks, waits, polling fallback); created on first use."""
        if self._tracker is None:
            self._tracker = JobTracker(self.config, self.monitor, self._fetch_for_tracker)
        return self._tracker

    # -- async with: upstream's SDK was async -------------------------------------------------------------
    async def __aenter__(self) -> UpstreamComputeClient:
        """Hand over to an async client with the same settings (upstream code: ``async with ComputeClient()``).

        Returns:
            A ``cl_client.compute_client.ComputeClient`` (an ``AsyncComputeClient`` with upstream's
            signatures), closed by ``__aexit__``.

        Raises:
            ConfigurationError: this client was given a transport that cannot serve async requests.
            ComputeClientError: this client was closed or handed over already.
        """
        from cl_client.compute_client import ComputeClient as UpstreamComputeClient

        if self._closed:
            raise ComputeClientError("this ComputeClient is closed; create a new one for 'async with'")
        transport = self._transport
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise ConfigurationError(
                "'async with ComputeClient(...)' needs an async transport; this client was given a sync-only one"
            )
        monitor, self.monitor = self.monitor, None
        self._closed = True  # closed here: the tracker (none yet, normally) and the sync pool; the broker
        if self._tracker is not None:  # connection and the auth provider go to the async client
            self._tracker.close()
        self._http.close()
        twin = UpstreamComputeClient.adopt(self.config, self.auth, transport, monitor)
        self._async_twin = twin
        return twin

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the async client handed out by ``__aenter__``."""
        twin, self._async_twin = self._async_twin, None
        if twin is not None:
            await twin.aclose()

    # -- context manager ------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the tracker and the MQTT connection and close the HTTP pools. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._tracker is not None:
            self._tracker.close()
        if self.monitor is not None:
            self.monitor.close()
        self._http.close()
        self.auth.close()

    # -- REST ------------------------------------------------------------------------------------------
    def health(self, *, timeout: float | None = None) -> HealthResponse:
        """``GET /``: status, service name, version and guest mode.

        Raises:
            ComputeConnectionError: the server cannot be reached.
        """
        return self._call(_api.health(timeout))

    def get_capabilities(self, *, timeout: float | None = None) -> WorkerCapabilitiesResponse:
        """``GET /capabilities``: number of workers and idle workers per task type."""
        return self._call(_api.capabilities(timeout))

    def get_job(self, job_id: str, *, timeout: float | None = None) -> JobResponse:
        """``GET /jobs/{job_id}``.

        Raises:
            JobNotFoundError: no such job.
        """
        return self._call(_api.get_job(job_id, timeout))

    def delete_job(self, job_id: str, *, timeout: float | None = None) -> None:
        """``DELETE /jobs/{job_id}`` (also stops tracking it).

        Raises:
            JobNotFoundError: no such job (for example deleted already).
        """
        self._call(_api.delete_job(job_id, timeout))
        if self._tracker is not None:
            self._tracker.forget(job_id)

    def download_job_file(self, job_id: str, file_path: str, dest: PathLike, *, timeout: float | None = None) -> Path:
        """Download ``file_path`` (relative to the job directory, e.g. ``output/thumbnail.jpg``) to ``dest``.

        Streamed to a temporary file beside ``dest`` and renamed into place; on any error no file is left.
        If ``dest`` is a directory the file keeps its name inside it.

        Returns:
            The path written.

        Raises:
            JobNotFoundError: no such job. NotFoundError: no such file. ValidationError: a directory or an
            invalid path (400). PermissionDeniedError: a path outside the job (403).
        """
        with removing_created_folders(dest):  # a failed download leaves no folder it made (``DIR/``)
            target = download_target(dest, file_path)
            request = Request("GET", job_file_path(job_id, file_path), job_id=job_id, timeout=timeout)
            return self._http.download(request, target)

    def read_job_file(self, job_id: str, file_path: str, *, timeout: float | None = None) -> bytes:
        """Read a (small) file of a job into memory, e.g. ``output/hash.json``.

        Raises:
            JobNotFoundError: no such job. NotFoundError: no such file.
        """
        return self._call(self._read_file_call(job_id, file_path, timeout))

    def job_files(self, job_id: str) -> JobFiles:
        """File access for one job, used by the typed plugin results (sync, and async through a thread)."""
        read, save = self._sync_files(self._http, job_id)

        async def aread(path: str) -> bytes:
            return await asyncio.to_thread(read, path)

        async def asave(path: str, dest: Path) -> Path:
            return await asyncio.to_thread(save, path, dest)

        return JobFiles(job_id, read, save, aread, asave)

    def submit(
        self,
        task_type: str,
        file: PathLike | None,
        params: Mapping[str, object] | None = None,
        priority: int | None = None,
        *,
        on_progress: JobCallback | None = None,
        on_complete: JobCallback | None = None,
        filename: str | None = None,
        timeout: float | None = None,
    ) -> Job:
        """Create a job: upload ``file`` (streamed from disk) to ``POST /jobs/{task_type}``.

        The event subscription exists before the POST, so no event can be missed; callbacks registered
        here see the whole job. The POST is never retried once it may have reached the server.

        Args:
            task_type: the plugin, e.g. ``"hash"``.
            file: the file to upload; None sends no file part (only for routes that take a server path
                instead, such as upstream's February 2026 ``hls_streaming`` with ``input_absolute_path``).
            params: form fields (bools sent as true/false, lists/dicts as JSON, None left out).
            priority: 0-10 (default from the config), checked before anything is sent.
            on_progress: see ``subscribe_job_updates``.
            on_complete: see ``subscribe_job_updates``.
            filename: the name to send instead of the file's own.
            timeout: HTTP timeout for the upload.

        Returns:
            A ``Job`` handle.

        Raises:
            ConfigurationError: invalid priority. FileNotFoundError: no such file. ValidationError: the
            server rejected a field. ComputeConnectionError, AuthenticationError, PermissionDeniedError.
        """
        prio = self.config.check_priority(self.config.default_priority if priority is None else priority)
        upload = self._upload(file, filename) if file is not None else None
        self._events_ready()
        created = self._call(_api.create_job(task_type, upload, params or {}, prio, timeout))
        job = Job(self, created.job_id, created.task_type or task_type)
        self._watch_new_job(created.job_id, job.task_type, on_progress, on_complete)
        return job

    def wait_for_job(
        self,
        job_id: str,
        timeout: float | None = None,
        task_type: str = "unknown",
        *,
        poll_interval: float | None = None,
    ) -> JobResponse:
        """Wait until the job ends (``completed`` or ``error``) and return the confirmed record.

        Events are used while the broker is there; otherwise, and when events stop, the job is polled.

        Args:
            job_id: the job.
            timeout: seconds to wait (default ``config.job_timeout``).
            task_type: the job's task type (for records built from events).
            poll_interval: upstream's keyword, accepted and not used: polling follows ``config.poll_interval``
                and only happens when events are missing.

        Raises:
            JobTimeoutError: not finished within ``timeout`` (default ``config.job_timeout``).
            JobNotFoundError: no such job.
        """
        del poll_interval
        return self.tracker.wait(job_id, self.config.job_timeout if timeout is None else timeout, task_type)

    def wait_for_workers(
        self,
        capabilities: Iterable[str] | None = None,
        timeout: float | None = None,
        *,
        required_capabilities: Iterable[str] | None = None,
    ) -> WorkersReady:
        """Wait until every capability has a live worker; return the live workers (a truthy dict).

        Uses the retained capability messages; without MQTT (or as a cross-check when they disagree) it
        polls ``GET /capabilities``.

        Args:
            capabilities: the task types needed (none: return at once).
            timeout: seconds to wait (default ``config.worker_wait_timeout``).
            required_capabilities: upstream's name for ``capabilities``.

        Returns:
            ``WorkersReady``: live workers by id (empty without MQTT), always true.

        Raises:
            WorkerUnavailableError: a capability has no worker after ``timeout``; it names what is available.
            ConfigurationError: both ``capabilities`` and ``required_capabilities``, or a plain string.
        """
        wanted = self._wanted(capabilities, required_capabilities)
        limit = self.config.worker_wait_timeout if timeout is None else timeout
        if self.monitor is not None and self._events_ready():
            missing = self.monitor.wait_for_capabilities(wanted, limit)
            if not missing:
                return WorkersReady(self.workers())
            caps = self.get_capabilities()
            rest = self._missing_from_capabilities(missing, caps)
            if not rest:
                return WorkersReady(self.workers(), caps.capabilities)
            raise self._worker_error(rest, self._available())
        deadline = time.monotonic() + limit
        while True:
            caps = self.get_capabilities()
            missing = self._missing_from_capabilities(wanted, caps)
            if not missing:
                return WorkersReady(self.workers(), caps.capabilities)
            if time.monotonic() >= deadline:
                raise self._worker_error(missing, caps.capabilities)
            time.sleep(min(self.config.poll_interval, max(0.0, deadline - time.monotonic())))

    # -- admin -----------------------------------------------------------------------------------------
    def get_storage_size(self, *, timeout: float | None = None) -> StorageInfo:
        """``GET /admin/jobs/storage/size`` (admin)."""
        return self._call(_api.storage_size(timeout))

    def cleanup_old_jobs(self, days: int, *, timeout: float | None = None) -> CleanupResult:
        """``DELETE /admin/jobs/cleanup?days=N`` (admin): delete jobs older than ``days`` days."""
        return self._call(_api.cleanup(days, timeout))

    # -- guest mode (PROTOCOL.md §2: January 2026 /admin/config, February 2026 /admin/pref) ---------------
    _guest_routes: GuestModeRoutes | None = None

    @property
    def guest_mode_routes(self) -> GuestModeRoutes | None:
        """The guest-mode route set that answered last (None before the first guest-mode call); the next
        guest-mode call goes straight to it."""
        return self._guest_routes

    def _guest_call(self, make: Callable[[GuestModeRoutes], _api.Call[GuestModeConfig]]) -> GuestModeConfig:
        tried: list[HTTPStatusError] = []
        for routes in _api.guest_mode_order(self._guest_routes):
            try:
                found = self._call(make(routes))
            except HTTPStatusError as exc:
                if not _api.route_missing(exc):
                    raise
                tried.append(exc)
                continue
            self._guest_routes = routes
            return found
        raise _api.no_guest_routes(tried)

    def get_guest_mode_config(self, *, timeout: float | None = None) -> GuestModeConfig:
        """Read the guest-mode setting (admin) from whichever route set the server has.

        The first call tries ``GET /admin/pref`` (February 2026), then ``GET /admin/config`` (January 2026) when
        the first answers 404 or 405; the set that answered is remembered (``guest_mode_routes``) and tried first
        from then on.

        Returns:
            ``GuestModeConfig``: the value, ``updated_at``/``updated_by`` when the server sends them, and
            ``routes``, the route set that answered.

        Raises:
            AuthenticationError, PermissionDeniedError: 401/403 (never taken for a missing route).
            NotFoundError: the server has neither route set. ComputeConnectionError.
        """
        return self._guest_call(lambda routes: _api.guest_mode_get(routes, timeout))

    def get_guest_mode(self, *, timeout: float | None = None) -> bool:
        """Whether guest mode is on (admin): ``get_guest_mode_config().guest_mode`` (upstream's name and type).

        Raises:
            The errors of ``get_guest_mode_config``.
        """
        return self.get_guest_mode_config(timeout=timeout).guest_mode

    def set_guest_mode_config(self, enabled: bool, *, timeout: float | None = None) -> GuestModeConfig:
        """Turn guest mode on or off (admin) through whichever route set the server has.

        Tries ``PUT /admin/pref/guest-mode`` (February 2026), then ``PUT /admin/config/guest-mode`` (January
        2026) on 404/405, and remembers the set that answered, like ``get_guest_mode_config``.

        Args:
            enabled: the new value (a bool).
            timeout: HTTP timeout in seconds.

        Returns:
            ``GuestModeConfig``: the value the server reports now, its ``message`` and the ``routes`` used.

        Raises:
            ConfigurationError: ``enabled`` is not a bool (nothing sent). AuthenticationError,
            PermissionDeniedError: 401/403. NotFoundError: neither route set exists. ComputeConnectionError.
        """
        return self._guest_call(lambda routes: _api.guest_mode_set(enabled, routes, timeout))

    def set_guest_mode(self, enabled: bool, *, timeout: float | None = None) -> bool:
        """Turn guest mode on or off (admin); returns the new value (see ``set_guest_mode_config``).

        Raises:
            The errors of ``set_guest_mode_config``.
        """
        return self.set_guest_mode_config(enabled, timeout=timeout).guest_mode

    def update_guest_mode(self, guest_mode: bool, *, timeout: float | None = None) -> bool:
        """Upstream's name for ``set_guest_mode`` (``update_guest_mode(guest_mode=False)``); returns the new value.

        Raises:
            The errors of ``set_guest_mode_config``.
        """
        return self.set_guest_mode_config(guest_mode, timeout=timeout).guest_mode


class AsyncComputeClient(_ClientCore[httpx.AsyncBaseTransport], AsyncPlugins):
    """Async client: the same methods and arguments as ``ComputeClient``, awaitable (async context manager).

    Waiting and callbacks use the same tracker thread as the sync client, so no event-loop time is spent on
    MQTT; coroutine callbacks run on the loop that registered them. Every request goes through this client's
    one async transport: the tracker's confirmation GETs and polls (made from its threads) are run on the
    client's event loop (the loop of its last awaited call). Only the sync file access of typed results
    (``result.download_outputs()`` rather than ``await result.adownload_outputs()``) called on the loop's own
    thread cannot wait for the loop; it uses a sync pool, on the given transport when that transport is also
    a sync one (``httpx.MockTransport`` is), and raises ``ConfigurationError`` when it is async-only.
    """

    _http: AsyncHTTP
    _transport: httpx.AsyncBaseTransport | None
    _loop: asyncio.AbstractEventLoop | None
    _sync_http: SyncHTTP | None

    @classmethod
    def adopt(
        cls,
        config: ComputeClientConfig,
        auth: AuthProvider,
        transport: httpx.AsyncBaseTransport | None = None,
        monitor: MqttMonitor | None = None,
    ) -> Self:
        """A client from settings already resolved (no environment is read again), taking over ``monitor``.

        Used by ``async with ComputeClient(...)`` to hand a sync client's settings and broker connection over.

        Args:
            config: the resolved settings.
            auth: the auth provider (now owned by the new client).
            transport: an async httpx transport (tests).
            monitor: a started MQTT monitor to take over (None: start one when ``config`` names a broker).
        """
        client = cls.__new__(cls)
        client._setup(config, auth, transport, monitor)
        return client

    def _make_http(self, transport: httpx.AsyncBaseTransport | None) -> None:
        self._transport = transport
        self._http = AsyncHTTP(self.config, self.auth, transport)
        self._sync_http = None
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    async def _call(self, call: _api.Call[T]) -> T:
        self._loop = asyncio.get_running_loop()
        return call.parse(await self._http.send(call.request))

    def _on_loop(self, make: Callable[[], Coroutine[object, object, T]]) -> T:
        """Run a coroutine of this client on its event loop from another thread and wait for it.

        Raises:
            ComputeClientError: the loop is not running (or is closed), or this is the loop's own thread.
        """
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            raise ComputeClientError("the AsyncComputeClient's event loop is not running; await the client there")
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            raise ComputeClientError("cannot wait for the event loop on its own thread; use the async method")
        future = asyncio.run_coroutine_threadsafe(make(), loop)
        while True:
            try:
                return future.result(timeout=0.5)
            except TimeoutError:
                if loop.is_closed() or not loop.is_running():
                    future.cancel()
                    raise ComputeClientError("the AsyncComputeClient's event loop stopped") from None

    def _fetch_for_tracker(self, job_id: str) -> JobResponse:
        return self._on_loop(lambda: self._call(_api.get_job(job_id)))

    def _sync_pool(self) -> SyncHTTP:
        """The sync pool for file access on the loop's own thread (see the class docstring).

        Raises:
            ConfigurationError: the client's transport is async-only.
        """
        if self._sync_http is None:
            transport = self._transport
            if transport is not None and not isinstance(transport, httpx.BaseTransport):
                raise ConfigurationError(
                    "this AsyncComputeClient has an async-only transport: use the async file methods "
                    "(await result.adownload_outputs(...), await client.read_job_file(...))"
                )
            self._sync_http = SyncHTTP(self.config, self.auth, transport)
        return self._sync_http

    @property
    def tracker(self) -> JobTracker:
        """The job tracker (callbacks, waits, polling fallback); created on first use."""
        if self._tracker is None:
            with contextlib.suppress(RuntimeError):
                self._loop = asyncio.get_running_loop()
            self._tracker = JobTracker(self.config, self.monitor, self._fetch_for_tracker)
        return self._tracker

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Async twin of ``ComputeClient.close``."""
        if self._closed:
            return
        self._closed = True
        if self._tracker is not None:
            await asyncio.to_thread(self._tracker.close)
        if self._sync_http is not None:
            self._sync_http.close()
        if self.monitor is not None:
            await asyncio.to_thread(self.monitor.close)
        await self._http.aclose()
        await self.auth.aclose()

    close = aclose

    async def _events_ready_async(self) -> bool:
        if self.monitor is None or self.monitor.ready:
            return self.monitor is not None
        return await asyncio.to_thread(self._events_ready)

    async def health(self, *, timeout: float | None = None) -> HealthResponse:
        """Async ``ComputeClient.health``."""
        return await self._call(_api.health(timeout))

    async def get_capabilities(self, *, timeout: float | None = None) -> WorkerCapabilitiesResponse:
        """Async ``ComputeClient.get_capabilities``."""
        return await self._call(_api.capabilities(timeout))

    async def get_job(self, job_id: str, *, timeout: float | None = None) -> JobResponse:
        """Async ``ComputeClient.get_job``."""
        return await self._call(_api.get_job(job_id, timeout))

    async def delete_job(self, job_id: str, *, timeout: float | None = None) -> None:
        """Async ``ComputeClient.delete_job``."""
        await self._call(_api.delete_job(job_id, timeout))
        if self._tracker is not None:
            self._tracker.forget(job_id)

    async def download_job_file(
        self, job_id: str, file_path: str, dest: PathLike, *, timeout: float | None = None
    ) -> Path:
        """Async ``ComputeClient.download_job_file``."""
        self._loop = asyncio.get_running_loop()
        with removing_created_folders(dest):  # a failed download leaves no folder it made (``DIR/``)
            target = download_target(dest, file_path)
            request = Request("GET", job_file_path(job_id, file_path), job_id=job_id, timeout=timeout)
            return await self._http.download(request, target)

    async def read_job_file(self, job_id: str, file_path: str, *, timeout: float | None = None) -> bytes:
        """Async ``ComputeClient.read_job_file``."""
        return await self._call(self._read_file_call(job_id, file_path, timeout))

    def _loop_usable_from_here(self) -> bool:
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return False
        try:
            return asyncio.get_running_loop() is not loop
        except RuntimeError:
            return True

    def job_files(self, job_id: str) -> JobFiles:
        """File access for one job, used by the typed plugin results (async; sync through the loop when
        called from another thread, else through the sync pool described in the class docstring)."""

        async def aread(path: str) -> bytes:
            return await self.read_job_file(job_id, path)

        async def asave(path: str, dest: Path) -> Path:
            return await self.download_job_file(job_id, path, dest)

        def read(path: str) -> bytes:
            if self._loop_usable_from_here():
                return self._on_loop(lambda: aread(path))
            return self._sync_files(self._sync_pool(), job_id)[0](path)

        def save(path: str, dest: Path) -> Path:
            if self._loop_usable_from_here():
                return self._on_loop(lambda: asave(path, dest))
            return self._sync_files(self._sync_pool(), job_id)[1](path, dest)

        return JobFiles(job_id, read, save, aread, asave)

    async def submit(
        self,
        task_type: str,
        file: PathLike | None,
        params: Mapping[str, object] | None = None,
        priority: int | None = None,
        *,
        on_progress: JobCallback | None = None,
        on_complete: JobCallback | None = None,
        filename: str | None = None,
        timeout: float | None = None,
    ) -> AsyncJob:
        """Async ``ComputeClient.submit``; returns an ``AsyncJob``."""
        prio = self.config.check_priority(self.config.default_priority if priority is None else priority)
        upload = self._upload(file, filename) if file is not None else None
        await self._events_ready_async()
        created = await self._call(_api.create_job(task_type, upload, params or {}, prio, timeout))
        job = AsyncJob(self, created.job_id, created.task_type or task_type)
        self._watch_new_job(created.job_id, job.task_type, on_progress, on_complete)
        return job

    async def wait_for_job(
        self,
        job_id: str,
        timeout: float | None = None,
        task_type: str = "unknown",
        *,
        poll_interval: float | None = None,
    ) -> JobResponse:
        """Async ``ComputeClient.wait_for_job`` (``poll_interval`` is accepted and not used there either)."""
        del poll_interval
        self._loop = asyncio.get_running_loop()
        await self._events_ready_async()
        limit = self.config.job_timeout if timeout is None else timeout
        return await self.tracker.wait_async(job_id, limit, task_type)

    async def wait_for_workers(
        self,
        capabilities: Iterable[str] | None = None,
        timeout: float | None = None,
        *,
        required_capabilities: Iterable[str] | None = None,
    ) -> WorkersReady:
        """Async ``ComputeClient.wait_for_workers`` (a truthy ``WorkersReady``)."""
        wanted = self._wanted(capabilities, required_capabilities)
        limit = self.config.worker_wait_timeout if timeout is None else timeout
        if self.monitor is not None and await self._events_ready_async():
            monitor = self.monitor
            missing = await asyncio.to_thread(monitor.wait_for_capabilities, wanted, limit)
            if not missing:
                return WorkersReady(self.workers())
            caps = await self.get_capabilities()
            rest = self._missing_from_capabilities(missing, caps)
            if rest:
                raise self._worker_error(rest, self._available())
            return WorkersReady(self.workers(), caps.capabilities)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            caps = await self.get_capabilities()
            missing = self._missing_from_capabilities(wanted, caps)
            if not missing:
                return WorkersReady(self.workers(), caps.capabilities)
            if loop.time() >= deadline:
                raise self._worker_error(missing, caps.capabilities)
            await asyncio.sleep(min(self.config.poll_interval, max(0.0, deadline - loop.time())))

    async def get_storage_size(self, *, timeout: float | None = None) -> StorageInfo:
        """Async ``ComputeClient.get_storage_size``."""
        return await self._call(_api.storage_size(timeout))

    async def cleanup_old_jobs(self, days: int, *, timeout: float | None = None) -> CleanupResult:
        """Async ``ComputeClient.cleanup_old_jobs``."""
        return await self._call(_api.cleanup(days, timeout))

    # -- guest mode: the same route sets and memory as ComputeClient ---------------------------------------
    _guest_routes: GuestModeRoutes | None = None

    @property
    def guest_mode_routes(self) -> GuestModeRoutes | None:
        """See ``ComputeClient.guest_mode_routes``."""
        return self._guest_routes

    async def _guest_call(self, make: Callable[[GuestModeRoutes], _api.Call[GuestModeConfig]]) -> GuestModeConfig:
        tried: list[HTTPStatusError] = []
        for routes in _api.guest_mode_order(self._guest_routes):
            try:
                found = await self._call(make(routes))
            except HTTPStatusError as exc:
                if not _api.route_missing(exc):
                    raise
                tried.append(exc)
                continue
            self._guest_routes = routes
            return found
        raise _api.no_guest_routes(tried)

    async def get_guest_mode_config(self, *, timeout: float | None = None) -> GuestModeConfig:
        """Async ``ComputeClient.get_guest_mode_config``.

        Raises:
            The errors of ``ComputeClient.get_guest_mode_config``.
        """
        return await self._guest_call(lambda routes: _api.guest_mode_get(routes, timeout))

    async def get_guest_mode(self, *, timeout: float | None = None) -> bool:
        """Async ``ComputeClient.get_guest_mode``.

        Raises:
            The errors of ``ComputeClient.get_guest_mode_config``.
        """
        return (await self.get_guest_mode_config(timeout=timeout)).guest_mode

    async def set_guest_mode_config(self, enabled: bool, *, timeout: float | None = None) -> GuestModeConfig:
        """Async ``ComputeClient.set_guest_mode_config``.

        Raises:
            The errors of ``ComputeClient.set_guest_mode_config``.
        """
        return await self._guest_call(lambda routes: _api.guest_mode_set(enabled, routes, timeout))

    async def set_guest_mode(self, enabled: bool, *, timeout: float | None = None) -> bool:
        """Async ``ComputeClient.set_guest_mode``.

        Raises:
            The errors of ``ComputeClient.set_guest_mode_config``.
        """
        return (await self.set_guest_mode_config(enabled, timeout=timeout)).guest_mode

    async def update_guest_mode(self, guest_mode: bool, *, timeout: float | None = None) -> bool:
        """Async ``ComputeClient.update_guest_mode`` (upstream's name, keyword ``guest_mode``).

        Raises:
            The errors of ``ComputeClient.set_guest_mode_config``.
        """
        return (await self.set_guest_mode_config(guest_mode, timeout=timeout)).guest_mode


class _JobHandle:
    """Shared part of ``Job`` and ``AsyncJob``."""

    def __init__(self, client: ComputeClient | AsyncComputeClient, job_id: str, task_type: str) -> None:
        self._client = client
        self.job_id = job_id
        self.task_type = task_type

    def __repr__(self) -> str:
        return f"{type(self).__name__}(job_id={self.job_id!r}, task_type={self.task_type!r}, status={self.status!r})"

    @property
    def status(self) -> StatusText:
        """The last status seen through events or polls (``queued`` before any)."""
        return StatusText(self._client.tracker.last_status(self.job_id) or "queued")

    @staticmethod
    def _check(job: JobResponse) -> JobResponse:
        if job.is_failed:
            raise JobFailedError(job)
        return job


class Job(_JobHandle):
    """A submitted job (sync). Returned by ``ComputeClient.submit`` and the plugin clients.

    Attributes:
        job_id: the server's id.
        task_type: the plugin.
    """

    _client: ComputeClient

    def __init__(self, client: ComputeClient, job_id: str, task_type: str) -> None:
        super().__init__(client, job_id, task_type)

    def refresh(self) -> JobResponse:
        """``GET /jobs/{id}`` now."""
        return self._client.get_job(self.job_id)

    def wait(self, timeout: float | None = None) -> JobResponse:
        """Wait for the end and return the final record (completed or error; does not raise on error).

        Raises:
            JobTimeoutError: not finished in time (default ``config.job_timeout``).
        """
        return self._client.wait_for_job(self.job_id, timeout=timeout, task_type=self.task_type)

    def result(self, timeout: float | None = None) -> JobResponse:
        """Wait for the end and return the record of a completed job.

        Raises:
            JobFailedError: the job ended in error (carries the record and the server's message).
            JobTimeoutError: not finished in time.
        """
        return self._check(self.wait(timeout))

    def download(self, file_path: str, dest: PathLike) -> Path:
        """Download a file of this job (see ``ComputeClient.download_job_file``)."""
        return self._client.download_job_file(self.job_id, file_path, dest)

    def delete(self) -> None:
        """Delete the job on the server."""
        self._client.delete_job(self.job_id)


class AsyncJob(_JobHandle):
    """Async twin of ``Job`` (``await job.wait()``, ``await job.result()``, ...)."""

    _client: AsyncComputeClient

    def __init__(self, client: AsyncComputeClient, job_id: str, task_type: str) -> None:
        super().__init__(client, job_id, task_type)

    async def refresh(self) -> JobResponse:
        """Async ``Job.refresh``."""
        return await self._client.get_job(self.job_id)

    async def wait(self, timeout: float | None = None) -> JobResponse:
        """Async ``Job.wait``."""
        return await self._client.wait_for_job(self.job_id, timeout=timeout, task_type=self.task_type)

    async def result(self, timeout: float | None = None) -> JobResponse:
        """Async ``Job.result``."""
        return self._check(await self.wait(timeout))

    async def download(self, file_path: str, dest: PathLike) -> Path:
        """Async ``Job.download``."""
        return await self._client.download_job_file(self.job_id, file_path, dest)

    async def delete(self) -> None:
        """Async ``Job.delete``."""
        await self._client.delete_job(self.job_id)
