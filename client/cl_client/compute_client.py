"""Upstream's module path ``cl_client.compute_client``: the async ``ComputeClient`` of upstream's SDK.

Here ``ComputeClient`` is an ``AsyncComputeClient`` with upstream's signatures: positional
``(base_url, timeout, mqtt_url, auth_provider, server_pref)``, ``wait_for_job(job_id, poll_interval, timeout)``
with ``timeout=None`` meaning no limit, ``wait_for_workers(required_capabilities, timeout) -> bool``,
``http_submit_job``, and the attributes ``base_url``, ``timeout``, ``_session`` and ``_mqtt``. It is also what
``async with cl_client.ComputeClient(...)`` hands out. ``cl_client.ComputeClient`` itself stays the sync client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import IO, TYPE_CHECKING

import httpx

from cl_client._auth import AuthProvider
from cl_client._client import AsyncComputeClient
from cl_client._config import ComputeClientConfig
from cl_client._core import Request, map_error, parse_model
from cl_client._exceptions import ComputeConnectionError
from cl_client._models import JobCreatedResponse, JobResponse
from cl_client.mqtt_monitor import MQTTJobMonitor

if TYPE_CHECKING:
    from cl_client.server_config import ServerConfig
    from cl_client.server_pref import ServerPref

__all__ = ["ComputeClient", "ComputeClientConfig", "JobCreatedResponse"]

#: upstream's ``files`` argument of ``http_submit_job``: field -> (file name, open file, media type).
UpstreamFiles = Mapping[str, tuple[str, IO[bytes], str]]


class ComputeClient(AsyncComputeClient):
    """Upstream's async ``ComputeClient`` (``async with ComputeClient() as client: await client.get_job(...)``).

    Args:
        base_url: compute API URL (else ``server_pref``/``server_config``, then the environment).
        timeout: HTTP timeout in seconds.
        mqtt_url: broker URL.
        auth_provider: an ``AuthProvider`` (default ``NoAuthProvider``, or one built from ``token``/``username``).
        server_pref: a ``ServerPref`` whose URLs are used for those not given.
        mqtt_broker: January 2026 broker host.
        mqtt_port: January 2026 broker port.
        server_config: January 2026 ``ServerConfig``.
        auth_url: auth service URL (this package's keyword).
        token: a static JWT (this package's keyword).
        username: login user name (this package's keyword).
        password: login password (this package's keyword).
        config: a ``ComputeClientConfig`` of defaults (this package's keyword).
        transport: an async httpx transport (tests).

    Raises:
        ConfigurationError: an invalid URL or setting.
    """

    def __init__(
        self,
        base_url: str | None = None,
        timeout: float | None = None,
        mqtt_url: str | None = None,
        auth_provider: AuthProvider | None = None,
        server_pref: ServerPref | None = None,
        *,
        mqtt_broker: str | None = None,
        mqtt_port: int | None = None,
        server_config: ServerConfig | None = None,
        auth_url: str | None = None,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        config: ComputeClientConfig | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url,
            mqtt_url=mqtt_url,
            auth_url=auth_url,
            token=token,
            username=username,
            password=password,
            timeout=timeout,
            auth_provider=auth_provider,
            config=config,
            transport=transport,
            server_pref=server_pref,
            mqtt_broker=mqtt_broker,
            mqtt_port=mqtt_port,
            server_config=server_config,
        )

    # -- upstream's attributes ------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The compute API URL (without a trailing slash)."""
        return self.config.base_url

    @property
    def timeout(self) -> float:
        """The default HTTP timeout in seconds."""
        return self.config.timeout

    @property
    def _session(self) -> httpx.AsyncClient:
        """The ``httpx.AsyncClient`` every request of this client goes through."""
        return self._http.client

    @property
    def _mqtt(self) -> MQTTJobMonitor:
        """Upstream's monitor attribute: a view of this client's broker connection and job tracker."""
        view = self.__dict__.get("_mqtt_view")
        if not isinstance(view, MQTTJobMonitor):
            view = MQTTJobMonitor.for_client(self)
            self.__dict__["_mqtt_view"] = view
        return view

    # -- upstream's signatures --------------------------------------------------------------------------
    async def wait_for_job(  # pyright: ignore[reportIncompatibleMethodOverride] - upstream's argument order
        self,
        job_id: str,
        poll_interval: float | None = None,
        timeout: float | None = None,
        task_type: str = "unknown",
    ) -> JobResponse:
        """Wait until the job ends and return the confirmed record (``completed`` or ``error``/``failed``).

        Events are used while the broker is there; otherwise the job is polled every ``config.poll_interval``
        seconds, growing (``poll_interval`` is accepted for upstream code and not used).

        Args:
            job_id: the job.
            poll_interval: accepted, not used.
            timeout: seconds to wait; ``None`` waits without limit, as upstream's SDK.
            task_type: the job's task type (for records built from events).

        Raises:
            JobTimeoutError: not finished within ``timeout`` (also the builtin ``TimeoutError``).
            JobNotFoundError: no such job.
        """
        del poll_interval
        self._loop = asyncio.get_running_loop()
        await self._events_ready_async()
        return await self.tracker.wait_async(job_id, timeout, task_type)

    async def wait_for_workers(  # pyright: ignore[reportIncompatibleMethodOverride] - upstream returns bool
        self,
        required_capabilities: Iterable[str] | None = None,
        timeout: float | None = None,
    ) -> bool:
        """Wait until every required capability has a live worker; return True (upstream's contract).

        Raises:
            WorkerUnavailableError: a capability has no worker within ``timeout`` (default 30 s).
        """
        await super().wait_for_workers(required_capabilities, timeout)
        return True

    async def http_submit_job(
        self,
        endpoint: str,
        data: Mapping[str, object] | None,
        files: UpstreamFiles | None,
    ) -> str:
        """Upstream's low-level job creation: ``POST endpoint`` with form ``data`` and multipart ``files``.

        The job is tracked from the moment its id is known (events that came first are replayed).

        Returns:
            The new job's id.

        Raises:
            HTTPStatusError: the server refused (a subclass per status; also an ``httpx.HTTPStatusError``).
            ComputeConnectionError: the server could not be reached.
        """
        await self._events_ready_async()
        form = {key: str(value) for key, value in (data or {}).items()}
        request = Request("POST", endpoint, data=form, retry=False)
        self._loop = asyncio.get_running_loop()
        try:
            response = await self._http.client.post(
                endpoint, data=form, files=dict(files) if files else None, headers=await self.auth.aheaders()
            )
        except httpx.TransportError as exc:
            url = self.config.base_url + endpoint
            message = f"POST {url} failed: {type(exc).__name__}: {exc}"
            raise ComputeConnectionError(message, method="POST", url=url) from None
        if response.status_code >= 400:
            raise map_error(request, response)
        created = parse_model(JobCreatedResponse, response)
        task_type = created.task_type if created.task_type != "unknown" else endpoint.rstrip("/").rsplit("/", 1)[-1]
        self._watch_new_job(created.job_id, task_type, None, None)
        return created.job_id
