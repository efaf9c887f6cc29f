"""MQTT: one paho client per ``ComputeClient`` listening on ``inference/events`` and ``inference/workers/+``.

Everything here runs in paho's network thread and must never block or raise there: messages are parsed,
routed by job id through a dict (O(1)) into a non-blocking listener, or buffered for a short window when
the job id is not known yet (the ``queued`` event and fast completions arrive before the POST returns).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError as PydanticValidationError

from cl_client._config import ComputeClientConfig, MqttSettings
from cl_client._exceptions import format_seconds
from cl_client._models import JobEvent, WorkerCapability

log = logging.getLogger("cl_client.mqtt")

EVENTS_TOPIC = "inference/events"
WORKERS_PREFIX = "inference/workers/"
WORKERS_TOPIC = WORKERS_PREFIX + "+"

JobListener = Callable[[JobEvent], None]
WorkerListener = Callable[[str, WorkerCapability | None], None]


def make_client_id(prefix: str = "cl-client") -> str:
    """A unique MQTT client id: prefix, process id, the xdist worker id when present, a random part."""
    xdist = os.environ.get("PYTEST_XDIST_WORKER")
    parts = [prefix, str(os.getpid())]
    if xdist:
        parts.append(xdist)
    parts.append(secrets.token_hex(4))
    return "-".join(parts)


@dataclass
class MonitorStats:
    """Counters, for diagnostics and tests.

    Attributes:
        events: job events parsed.
        routed: events delivered to a listener at once.
        buffered: events kept for a job id not yet known.
        replayed: buffered events delivered when their job was registered.
        malformed: messages dropped because they could not be parsed.
        connects: successful connections (reconnects included).
    """

    events: int = 0
    routed: int = 0
    buffered: int = 0
    replayed: int = 0
    malformed: int = 0
    connects: int = 0


class MqttMonitor:
    """Thread-safe MQTT monitor: job-event routing, an early-event buffer, and the worker registry.

    Args:
        settings: the broker.
        config: client settings (protocol, keep-alive, buffer window, reconnect delay).
        client_id: the MQTT client id (``make_client_id()`` when omitted).
    """

    def __init__(self, settings: MqttSettings, config: ComputeClientConfig, client_id: str | None = None) -> None:
        self.settings = settings
        self.config = config
        self.client_id = client_id or make_client_id()
        self.stats = MonitorStats()
        self._lock = threading.Lock()
        self._listeners: dict[str, JobListener] = {}
        self._pending: OrderedDict[str, list[tuple[float, JobEvent]]] = OrderedDict()
        self._pending_count = 0
        self._workers: dict[str, WorkerCapability] = {}
        self._workers_cond = threading.Condition(self._lock)
        self._worker_listeners: list[WorkerListener] = []
        self._connection_listeners: list[Callable[[bool], None]] = []
        self._ready = threading.Event()
        self._sub_mids: set[int] = set()
        self._closed = False
        self._started = False
        # Waiting for the broker happens once, before the first connection: after that (or once that wait
        # ran out) a submit never waits, paho's network thread reconnects in the background and the tracker
        # polls meanwhile. ``_outage``: the broker is known to be away (one warning per outage).
        self._ever_ready = False
        self._gave_up = False
        self._outage = False
        protocol = mqtt.MQTTv5 if config.mqtt_protocol == "5" else mqtt.MQTTv311
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=protocol,
            reconnect_on_failure=True,
        )
        if settings.username:
            self._client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            self._client.tls_set()  # pyright: ignore[reportUnknownMemberType]
        self._client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(config.mqtt_reconnect_max_delay)))
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start connecting in the background (never blocks). Idempotent."""
        if self._started:
            return
        self._started = True
        try:
            self._client.connect_async(self.settings.host, self.settings.port, self.config.mqtt_keepalive)
        except (OSError, ValueError) as exc:  # e.g. an unresolvable host
            log.warning("MQTT broker %s: %s; working by polling", self.settings.url, exc)
        self._client.loop_start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until connected and subscribed to both topics; False when not (now, or after the timeout).

        Only the very first connection is waited for, at most ``timeout`` (default ``mqtt_connect_timeout``;
        threads calling together share that one wait, and its running out is logged once). Once the monitor
        was connected, or that first wait ran out, this never waits: a broker lost mid-session is
        reconnected in the background (paho's network thread, one reconnect loop per outage) while the
        client polls, so no submit waits for a reconnect.
        """
        if not self._started:
            self.start()
        if self._ready.is_set():
            return True
        if self._ever_ready or self._gave_up:
            return False
        limit = self.config.mqtt_connect_timeout if timeout is None else timeout
        ok = self._ready.wait(limit)
        if not ok:
            with self._lock:
                first = not self._gave_up and not self._ever_ready
                self._gave_up = True
                self._outage = True
            if first:
                log.warning(
                    "MQTT broker %s not reachable within %s s: waiting on jobs by polling until it answers",
                    self.settings.url,
                    format_seconds(limit),
                )
        return ok

    @property
    def ready(self) -> bool:
        """True while connected and subscribed."""
        return self._ready.is_set()

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        if self._closed:
            return
        self._closed = True
        self._ready.clear()
        with contextlib.suppress(OSError, ValueError):
            self._client.disconnect()
        self._client.loop_stop()

    # -- job listeners -------------------------------------------------------------------------------
    def add_listener(self, job_id: str, listener: JobListener) -> None:
        """Route events of ``job_id`` to ``listener`` (which must not block); buffered events are replayed
        first, in the caller's thread, in arrival order."""
        with self._lock:  # replay under the lock so a live event cannot overtake a buffered one
            self._listeners[job_id] = listener
            early = self._pending.pop(job_id, None)
            if early:
                self._pending_count -= len(early)
            for _, event in early or ():
                self.stats.replayed += 1
                self._deliver(listener, event)

    def remove_listener(self, job_id: str) -> None:
        """Stop routing events of ``job_id``."""
        with self._lock:
            self._listeners.pop(job_id, None)

    def add_connection_listener(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(True/False)`` when the monitor becomes ready or loses the broker."""
        self._connection_listeners.append(listener)

    # -- workers -------------------------------------------------------------------------------------
    def workers(self) -> dict[str, WorkerCapability]:
        """A snapshot of the live workers by id."""
        with self._lock:
            return dict(self._workers)

    def add_worker_listener(self, listener: WorkerListener) -> None:
        """Call ``listener(worker_id, capability or None)`` on every capability message (None = gone)."""
        with self._lock:
            self._worker_listeners.append(listener)

    def wait_for_capabilities(self, capabilities: Iterable[str], timeout: float) -> set[str]:
        """Wait until every capability has a live worker; return the ones still missing (empty = all there)."""
        wanted = set(capabilities)
        deadline = time.monotonic() + timeout

        def missing() -> set[str]:
            have: set[str] = set()
            for cap in self._workers.values():
                have.update(cap.capabilities)
            return wanted - have

        with self._workers_cond:
            while True:
                lacking = missing()
                remaining = deadline - time.monotonic()
                if not lacking or remaining <= 0:
                    return lacking
                self._workers_cond.wait(min(remaining, 0.5))

    # -- paho callbacks (network thread: never raise, never block) -----------------------------------
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        try:
            if reason_code.is_failure:
                log.warning("MQTT broker %s refused the connection: %s", self.settings.url, reason_code)
                return
            self.stats.connects += 1
            with self._lock:
                self._sub_mids.clear()
                # A reconnect starts from the retained messages again.
                self._workers.clear()
            for topic in (EVENTS_TOPIC, WORKERS_TOPIC):
                result, mid = client.subscribe(topic, qos=1)
                if result == mqtt.MQTT_ERR_SUCCESS and mid is not None:
                    with self._lock:
                        self._sub_mids.add(mid)
        except Exception:  # pragma: no cover - defensive: never break paho's thread
            log.exception("error in MQTT on_connect")

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code_list: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        try:
            if any(rc.is_failure for rc in reason_code_list):
                log.warning("MQTT subscription refused by %s: %s", self.settings.url, reason_code_list)
                return
            with self._lock:
                self._sub_mids.discard(mid)
                done = not self._sub_mids
            if done and not self._ready.is_set():
                with self._lock:
                    self._ever_ready = True
                    was_out, self._outage = self._outage, False
                self._ready.set()
                if was_out:
                    log.info("MQTT broker %s reachable again: events resumed", self.settings.url)
                self._notify_connection(True)
        except Exception:  # pragma: no cover
            log.exception("error in MQTT on_subscribe")

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        try:
            was_ready = self._ready.is_set()
            self._ready.clear()
            if was_ready and not self._closed:
                with self._lock:
                    new_outage, self._outage = not self._outage, True
                if new_outage:  # one warning per outage, however many reconnect attempts fail
                    log.warning(
                        "lost the MQTT broker %s (%s); polling until it is back", self.settings.url, reason_code
                    )
                self._notify_connection(False)
        except Exception:  # pragma: no cover
            log.exception("error in MQTT on_disconnect")

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
            if topic == EVENTS_TOPIC:
                self._handle_event(message.payload)
            elif topic.startswith(WORKERS_PREFIX):
                self._handle_worker(topic[len(WORKERS_PREFIX) :], message.payload)
        except Exception:  # never let a foreign message break the network thread
            self.stats.malformed += 1
            log.debug("dropped an MQTT message on %s", message.topic, exc_info=True)

    # -- message handling ----------------------------------------------------------------------------
    def _handle_event(self, payload: bytes | bytearray) -> None:
        try:
            event = JobEvent.model_validate_json(payload)
        except PydanticValidationError:
            self.stats.malformed += 1
            log.debug("malformed job event dropped: %r", payload[:200])
            return
        self.stats.events += 1
        now = time.monotonic()
        with self._lock:
            listener = self._listeners.get(event.job_id)
            if listener is None:
                self._buffer(event, now)
                return
        self.stats.routed += 1
        self._deliver(listener, event)

    def _buffer(self, event: JobEvent, now: float) -> None:
        # Called with the lock held. Drop expired entries (oldest first), then cap the total.
        ttl = self.config.event_buffer_ttl
        while self._pending:
            oldest_id, events = next(iter(self._pending.items()))
            if now - events[-1][0] <= ttl and self._pending_count < self.config.event_buffer_max:
                break
            self._pending.pop(oldest_id)
            self._pending_count -= len(events)
        self._pending.setdefault(event.job_id, []).append((now, event))
        self._pending.move_to_end(event.job_id)
        self._pending_count += 1
        self.stats.buffered += 1

    def _deliver(self, listener: JobListener, event: JobEvent) -> None:
        try:
            listener(event)
        except Exception:  # pragma: no cover - listeners are ours and non-blocking
            log.exception("job event listener failed for %s", event.job_id)

    def _handle_worker(self, topic_id: str, payload: bytes | bytearray) -> None:
        capability: WorkerCapability | None = None
        if payload.strip():
            try:
                capability = WorkerCapability.model_validate_json(payload)
            except PydanticValidationError:
                self.stats.malformed += 1
                log.debug("malformed capability message on %s dropped", topic_id)
                return
            if not capability.worker_id:
                capability = capability.model_copy(update={"worker_id": topic_id})
        with self._workers_cond:
            if capability is None:
                self._workers.pop(topic_id, None)
            else:
                self._workers[topic_id] = capability
            self._workers_cond.notify_all()
            listeners = list(self._worker_listeners)
        for listener in listeners:
            try:
                listener(topic_id, capability)
            except Exception:
                log.exception("worker listener failed")

    def _notify_connection(self, up: bool) -> None:
        for listener in list(self._connection_listeners):
            try:
                listener(up)
            except Exception:  # pragma: no cover
                log.exception("connection listener failed")
