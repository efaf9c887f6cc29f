"""Upstream's module path ``cl_client.mqtt_monitor``: ``MQTTJobMonitor`` and its shared registry.

A client's monitor is ``client._mqtt`` on ``cl_client.compute_client.ComputeClient`` (a view of the client's own
broker connection and job tracker, so its callbacks have the client's guarantees: events that came before the
POST's reply are kept, and ``on_complete`` fires exactly once with the record confirmed by ``GET /jobs/{id}``).

A monitor made on its own (``MQTTJobMonitor(url)`` or ``get_mqtt_monitor(url)``) has no compute server to ask,
so, as upstream's, it completes a job from its terminal event: ``on_complete`` gets a record built from the
event (status and progress only), once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from cl_client._config import ComputeClientConfig, MqttSettings, redact_url
from cl_client._exceptions import ComputeClientError, WorkerUnavailableError
from cl_client._models import JobResponse, WorkerCapability
from cl_client._mqtt import MqttMonitor
from cl_client._tracker import JobCallback, JobTracker

if TYPE_CHECKING:
    from cl_client._client import AsyncComputeClient

__all__ = ["MQTTJobMonitor", "get_mqtt_monitor", "release_mqtt_monitor"]


class MQTTJobMonitor:
    """Job events and worker capabilities from the broker (upstream's ``MQTTJobMonitor``).

    Args:
        url: broker URL (default ``mqtt://localhost:1883``).
        connect_timeout: how long to wait for the first connection (it goes on in the background after).
        broker: upstream's January 2026 broker host (instead of ``url``).
        port: upstream's January 2026 broker port (with ``broker``).

    Raises:
        ConfigurationError: an invalid URL (also a ValueError, as upstream raised).
    """

    def __init__(
        self,
        url: str | None = None,
        connect_timeout: float = 5.0,
        *,
        broker: str | None = None,
        port: int | None = None,
    ) -> None:
        if url is None and (broker is not None or port is not None):
            url = f"mqtt://{broker or 'localhost'}:{port or 1883}"
        self.url = url or ComputeClientConfig.MQTT_URL
        settings = MqttSettings.from_url(self.url)
        config = ComputeClientConfig(mqtt_url=self.url, mqtt_connect_timeout=connect_timeout)
        monitor = MqttMonitor(settings, config)
        monitor.start()
        monitor.wait_ready(connect_timeout)
        self._task_types: dict[str, str] = {}
        tracker = JobTracker(config, monitor, self._from_events)
        self._init(monitor, lambda: tracker, None, owned=True)

    def _init(
        self,
        monitor: MqttMonitor | None,
        tracker: Callable[[], JobTracker],
        client: AsyncComputeClient | None,
        *,
        owned: bool,
    ) -> None:
        self._monitor = monitor
        self._tracker = tracker
        self._client = client
        self._owned = owned
        self._closed = False
        if monitor is not None:
            self.broker = monitor.settings.host
            self.port = monitor.settings.port
        else:
            self.broker = ""
            self.port = 0

    @classmethod
    def for_client(cls, client: AsyncComputeClient) -> MQTTJobMonitor:
        """Return a view of a client's broker connection and tracker (closing it leaves the client's alone)."""
        view = cls.__new__(cls)
        view.url = client.config.mqtt.url if client.config.mqtt is not None else ""
        view._task_types = {}
        view._init(client.monitor, lambda: client.tracker, client, owned=False)
        return view

    def __repr__(self) -> str:
        return f"MQTTJobMonitor(url={redact_url(self.url)!r}, connected={self._connected})"

    def _from_events(self, job_id: str) -> JobResponse:
        """Answer the tracker's "GET" for a monitor without a server: what the events said."""
        seen = self._tracker().reported(job_id)
        if seen is None:
            raise ComputeClientError(f"no event seen yet for job {job_id}")
        status, progress = seen
        task_type = self._task_types.get(job_id, "unknown")
        return JobResponse(job_id=job_id, task_type=task_type, status=status, progress=progress)

    @property
    def _connected(self) -> bool:
        """True while connected and subscribed (upstream tests read this attribute)."""
        return self._monitor is not None and self._monitor.ready

    @property
    def connected(self) -> bool:
        """True while connected to the broker and subscribed."""
        return self._connected

    def subscribe_job_updates(
        self,
        job_id: str,
        on_progress: JobCallback | None = None,
        on_complete: JobCallback | None = None,
        task_type: str = "unknown",
    ) -> str:
        """Call ``on_progress`` per update and ``on_complete`` once at the end; return a subscription id.

        Coroutine callbacks run on the loop running where this is called.

        Raises:
            ComputeClientError: a coroutine callback without a running event loop, or a closed monitor.
        """
        if self._closed:
            raise ComputeClientError("this MQTTJobMonitor is closed")
        self._task_types[job_id] = task_type
        return self._tracker().subscribe(job_id, task_type=task_type, on_progress=on_progress, on_complete=on_complete)

    def unsubscribe(self, subscription_id: str) -> None:
        """Remove a subscription (unknown or finished ones are ignored, as upstream)."""
        self._tracker().unsubscribe(subscription_id)

    def get_worker_capabilities(self) -> dict[str, WorkerCapability]:
        """Return the live workers by id (a copy)."""
        return self._monitor.workers() if self._monitor is not None else {}

    def subscribe_worker_updates(self, callback: Callable[[str, WorkerCapability | None], None]) -> None:
        """Call ``callback(worker_id, capability)`` on each capability message (``None``: the worker left)."""
        if self._monitor is not None:
            self._monitor.add_worker_listener(callback)

    async def wait_for_capability(self, task_type: str, timeout: float | None = None) -> bool:
        """Wait until a live worker offers ``task_type``; return True.

        A client's monitor asks the client (``wait_for_workers``, which also uses ``GET /capabilities``).

        Raises:
            WorkerUnavailableError: none within ``timeout`` (default 30 s); ``.available_capabilities`` holds
                capability -> idle workers.
        """
        limit = timeout or ComputeClientConfig.WORKER_WAIT_TIMEOUT
        if self._client is not None:
            await self._client.wait_for_workers([task_type], limit)
            return True
        monitor = self._monitor
        if monitor is None:  # pragma: no cover - a standalone monitor always has one
            raise WorkerUnavailableError(task_type, {})
        missing = await asyncio.to_thread(monitor.wait_for_capabilities, {task_type}, limit)
        if missing:
            counts: dict[str, int] = {}
            for worker in monitor.workers().values():
                for cap in worker.capabilities:
                    counts[cap] = counts.get(cap, 0) + worker.idle_count
            raise WorkerUnavailableError(task_type, counts)
        return True

    def close(self) -> None:
        """Disconnect (a client's view: nothing; the client owns its connection)."""
        if self._closed:
            return
        self._closed = True
        if self._owned:
            self._tracker().close()
            if self._monitor is not None:
                self._monitor.close()


_registry: dict[str, tuple[MQTTJobMonitor, int]] = {}
_registry_lock = threading.Lock()


def get_mqtt_monitor(url: str | None = None, *, broker: str | None = None, port: int | None = None) -> MQTTJobMonitor:
    """Return the shared monitor of a broker URL, counted: each call must be matched by ``release_mqtt_monitor``.

    Args:
        url: broker URL (default ``mqtt://localhost:1883``).
        broker: upstream's January 2026 broker host (instead of ``url``).
        port: upstream's January 2026 broker port.
    """
    if url is None and (broker is not None or port is not None):
        url = f"mqtt://{broker or 'localhost'}:{port or 1883}"
    key = url or ComputeClientConfig.MQTT_URL
    with _registry_lock:
        entry = _registry.get(key)
        if entry is not None:
            _registry[key] = (entry[0], entry[1] + 1)
            return entry[0]
        monitor = MQTTJobMonitor(key)
        _registry[key] = (monitor, 1)
        return monitor


def release_mqtt_monitor(monitor: MQTTJobMonitor) -> None:
    """Give back a monitor from ``get_mqtt_monitor``; the last release closes it (unknown ones are closed)."""
    with _registry_lock:
        entry = _registry.get(monitor.url)
        if entry is None or entry[0] is not monitor:
            monitor.close()
            return
        if entry[1] <= 1:
            del _registry[monitor.url]
            monitor.close()
        else:
            _registry[monitor.url] = (monitor, entry[1] - 1)
