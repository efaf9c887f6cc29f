"""``ComputeClient`` (sync) and ``AsyncComputeClient`` (async): the same methods over one shared core.

Request building and parsing live in ``_api``; HTTP I/O in ``_http``; MQTT in ``_mqtt``; job tracking
(callbacks, confirmation GETs, the polling fallback) in ``_tracker``. Each client method is one call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Generic, Self, TypeVar

import httpx

from cl_client import _api
from cl_client._auth import AuthProvider, JWTAuthProvider, NoAuthProvider
from cl_client._config import ComputeClientConfig, resolve_config
from cl_client._core import Request, Upload, job_file_path
from cl_client._exceptions import HTTPStatusError, JobFailedError, WorkerUnavailableError
from cl_client._http import AsyncHTTP, SyncHTTP, download_target
from cl_client._models import (
    CleanupResult,
    GuestModeConfig,
    GuestModeRoutes,
    HealthResponse,
    JobResponse,
    StorageInfo,
    WorkerCapabilitiesResponse,
    WorkerCapability,
)
from cl_client._mqtt import MqttMonitor
from cl_client._tracker import JobCallback, JobTracker
from cl_client.plugins import AsyncPlugins, JobFiles, SyncPlugins

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


class _ClientCore(Generic[TransportT]):
    """State, construction and the I/O-free methods shared by both clients."""

    config: ComputeClientConfig
    auth: AuthProvider
    monitor: MqttMonitor | None
    _tracker: JobTracker | None
    _tracker_http: SyncHTTP | None

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
    ) -> None:
        self.config = resolve_config(
            server_url=server_url or base_url,
            mqtt_url=mqtt_url,
            auth_url=auth_url,
            token=token,
            username=username,
            password=password,
            timeout=timeout,
            base=config,
        )
        self.auth = _auth_from(self.config, auth_provider)
        settings = self.config.mqtt
        self.monitor = MqttMonitor(settings, self.config) if settings is not None else None
        if self.monitor is not None:
            self.monitor.start()  # connects in the background; submit waits for it (bounded)
        self._tracker = None
        self._tracker_http = None
        self._make_http(transport)
        self._closed = False

    def _make_http(self, transport: TransportT | None) -> None:
        """Create ``self._http`` (the sync or async transport of the client)."""
        raise NotImplementedError  # pragma: no cover - each client provides it

    def __repr__(self) -> str:
        mqtt = self.config.mqtt
        return (
            f"{type(self).__name__}(server_url={self.config.base_url!r}, "
            f"mqtt_url={mqtt.url if mqtt else None!r}, auth={self.auth!r})"
        )

    # -- shared helpers ------------------------------------------------------------------------------
    def _fetch_for_tracker(self, job_id: str) -> JobResponse:
        assert self._tracker_http is not None
        call = _api.get_job(job_id)
        return call.parse(self._tracker_http.send(call.request))

    def _tracker_for(self, http: SyncHTTP) -> JobTracker:
        if self._tracker is None:
            self._tracker_http = http
            self._tracker = JobTracker(self.config, self.monitor, self._fetch_for_tracker)
        return self._tracker

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

    def _worker_error(self, missing: set[str], available: Iterable[str]) -> WorkerUnavailableError:
        ordered = sorted(missing)
        return WorkerUnavailableError(ordered[0], sorted(set(available)), ordered)

    def _available(self) -> set[str]:
        have: set[str] = set()
        for cap in self.workers().values():
            have.update(cap.capabilities)
        return have


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

    Settings not given are read from the environment (``CL_SERVER_URL``, ``CL_MQTT_URL``, ... and upstream's
    ``COMPUTE_URL``, ``MQTT_URL``, ``AUTH_URL``), then the defaults of ``ComputeClientConfig``.

    Raises:
        ConfigurationError: an invalid URL or setting.
    """

    _http: SyncHTTP

    def _make_http(self, transport: httpx.BaseTransport | None) -> None:
        self._http = SyncHTTP(self.config, self.auth, transport)

    def _call(self, call: _api.Call[T]) -> T:
        return call.parse(self._http.send(call.request))

    @property
    def tracker(self) -> JobTracker:
        """The job tracker (callbacks, waits, polling fallback); created on first use."""
        return self._tracker_for(self._http)

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

    def wait_for_job(self, job_id: str, timeout: float | None = None, task_type: str = "unknown") -> JobResponse:
        """Wait until the job ends (``completed`` or ``error``) and return the confirmed record.

        Events are used while the broker is there; otherwise, and when events stop, the job is polled.

        Raises:
            JobTimeoutError: not finished within ``timeout`` (default ``config.job_timeout``).
            JobNotFoundError: no such job.
        """
        return self.tracker.wait(job_id, self.config.job_timeout if timeout is None else timeout, task_type)

    def wait_for_workers(
        self, capabilities: Iterable[str] | None = None, timeout: float | None = None
    ) -> dict[str, WorkerCapability]:
        """Wait until every capability has a live worker; return the live workers.

        Uses the retained capability messages; without MQTT (or as a cross-check when they disagree) it
        polls ``GET /capabilities``.

        Raises:
            WorkerUnavailableError: a capability has no worker after ``timeout`` (default
                ``config.worker_wait_timeout``); it names what is available.
        """
        wanted = set(capabilities or ())
        limit = self.config.worker_wait_timeout if timeout is None else timeout
        if self.monitor is not None and self._events_ready():
            missing = self.monitor.wait_for_capabilities(wanted, limit)
            if not missing:
                return self.workers()
            rest = self._missing_from_capabilities(missing, self.get_capabilities())
            if not rest:
                return self.workers()
            raise self._worker_error(rest, self._available())
        import time

        deadline = time.monotonic() + limit
        while True:
            caps = self.get_capabilities()
            missing = self._missing_from_capabilities(wanted, caps)
            if not missing:
                return self.workers()
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

    Waiting and callbacks use the same tracker thread as the sync client (with its own connection pool),
    so no event-loop time is spent on MQTT; coroutine callbacks run on the loop that registered them.
    """

    _http: AsyncHTTP

    def _make_http(self, transport: httpx.AsyncBaseTransport | None) -> None:
        self._http = AsyncHTTP(self.config, self.auth, transport)

    async def _call(self, call: _api.Call[T]) -> T:
        return call.parse(await self._http.send(call.request))

    @property
    def tracker(self) -> JobTracker:
        """The job tracker (callbacks, waits, polling fallback); created on first use."""
        if self._tracker is None:
            return self._tracker_for(SyncHTTP(self.config, self.auth))
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
        if self._tracker_http is not None:
            self._tracker_http.close()
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
        target = download_target(dest, file_path)
        request = Request("GET", job_file_path(job_id, file_path), job_id=job_id, timeout=timeout)
        return await self._http.download(request, target)

    async def read_job_file(self, job_id: str, file_path: str, *, timeout: float | None = None) -> bytes:
        """Async ``ComputeClient.read_job_file``."""
        return await self._call(self._read_file_call(job_id, file_path, timeout))

    def job_files(self, job_id: str) -> JobFiles:
        """File access for one job, used by the typed plugin results (async, and sync on the tracker's pool)."""
        self.tracker  # noqa: B018 - creates the tracker and its sync HTTP pool
        assert self._tracker_http is not None
        read, save = self._sync_files(self._tracker_http, job_id)

        async def aread(path: str) -> bytes:
            return await self.read_job_file(job_id, path)

        async def asave(path: str, dest: Path) -> Path:
            return await self.download_job_file(job_id, path, dest)

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

    async def wait_for_job(self, job_id: str, timeout: float | None = None, task_type: str = "unknown") -> JobResponse:
        """Async ``ComputeClient.wait_for_job``."""
        await self._events_ready_async()
        limit = self.config.job_timeout if timeout is None else timeout
        return await self.tracker.wait_async(job_id, limit, task_type)

    async def wait_for_workers(
        self, capabilities: Iterable[str] | None = None, timeout: float | None = None
    ) -> dict[str, WorkerCapability]:
        """Async ``ComputeClient.wait_for_workers``."""
        wanted = set(capabilities or ())
        limit = self.config.worker_wait_timeout if timeout is None else timeout
        if self.monitor is not None and await self._events_ready_async():
            monitor = self.monitor
            missing = await asyncio.to_thread(monitor.wait_for_capabilities, wanted, limit)
            if missing:
                rest = self._missing_from_capabilities(missing, await self.get_capabilities())
                if rest:
                    raise self._worker_error(rest, self._available())
            return self.workers()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            caps = await self.get_capabilities()
            missing = self._missing_from_capabilities(wanted, caps)
            if not missing:
                return self.workers()
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
    def status(self) -> str:
        """The last status seen through events or polls (``queued`` before any)."""
        return self._client.tracker.last_status(self.job_id) or "queued"

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
        return self._client.wait_for_job(self.job_id, timeout, self.task_type)

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
        return await self._client.wait_for_job(self.job_id, timeout, self.task_type)

    async def result(self, timeout: float | None = None) -> JobResponse:
        """Async ``Job.result``."""
        return self._check(await self.wait(timeout))

    async def download(self, file_path: str, dest: PathLike) -> Path:
        """Async ``Job.download``."""
        return await self._client.download_job_file(self.job_id, file_path, dest)

    async def delete(self) -> None:
        """Async ``Job.delete``."""
        await self._client.delete_job(self.job_id)
