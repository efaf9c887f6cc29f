"""An independent witness of ``inference/events``: every job event with the time it arrived.

The plugin's lifecycle checks and failure transcripts use it. It has its own MQTT connection (client id
``pytest-cl-<pid>-<xdist worker>-<random>``), subscribes before the first job is submitted, and keeps the
events of every job (bounded), because the ``queued`` event arrives before the POST that creates the job
returns its id.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from cl_client import JobEvent, MqttSettings
from cl_client._mqtt import EVENTS_TOPIC, make_client_id

_MAX_JOBS = 50_000


@dataclass(frozen=True)
class RecordedEvent:
    """One job event as the witness received it.

    Attributes:
        received: wall-clock time of arrival (seconds since the epoch).
        event_type: the normalised status (``queued``, ``processing``, ``completed``, ``error``, ...).
        progress: the event's progress, if any.
        timestamp: the server's timestamp (milliseconds), if any.
    """

    received: float
    event_type: str
    progress: float | None
    timestamp: float | None

    @property
    def is_terminal(self) -> bool:
        """True for ``completed`` and ``error``."""
        return self.event_type in ("completed", "error")

    def line(self, origin: float) -> str:
        """A transcript line: time of arrival (absolute and relative to ``origin``), type, progress."""
        clock = time.strftime("%H:%M:%S", time.localtime(self.received)) + f".{int(self.received * 1000) % 1000:03d}"
        progress = "" if self.progress is None else f" progress={self.progress:g}"
        server = "" if self.timestamp is None else f" server_ts={int(self.timestamp)}"
        return f"{clock} (+{(self.received - origin) * 1000:7.1f} ms) {self.event_type}{progress}{server}"


class EventRecorder:
    """Subscribe to ``inference/events`` and keep every event by job id.

    Args:
        mqtt_url: the broker.
    """

    def __init__(self, mqtt_url: str) -> None:
        self.settings = MqttSettings.from_url(mqtt_url)
        self._events: OrderedDict[str, list[RecordedEvent]] = OrderedDict()
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=make_client_id("pytest-cl"),
            protocol=mqtt.MQTTv311,
        )
        if self.settings.username:
            self._client.username_pw_set(self.settings.username, self.settings.password)
        if self.settings.tls:
            self._client.tls_set()  # pyright: ignore[reportUnknownMemberType]
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._started = False

    def start(self, timeout: float = 5.0) -> bool:
        """Connect and subscribe; True once the subscription is acknowledged within ``timeout``."""
        if not self._started:
            self._started = True
            try:
                self._client.connect_async(self.settings.host, self.settings.port, 30)
            except (OSError, ValueError):
                return False
            self._client.loop_start()
        return self._ready.wait(timeout)

    @property
    def ready(self) -> bool:
        """True while subscribed."""
        return self._ready.is_set()

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
            self._started = False
        self._ready.clear()

    def events(self, job_id: str) -> list[RecordedEvent]:
        """The events of a job so far, in arrival order."""
        with self._cond:
            return list(self._events.get(job_id, ()))

    def wait_any(self, job_id: str, timeout: float) -> bool:
        """Wait until some event of the job arrived; False after ``timeout``."""
        with self._cond:
            return self._cond.wait_for(lambda: bool(self._events.get(job_id)), timeout)

    def wait_terminal(self, job_id: str, timeout: float) -> RecordedEvent | None:
        """Wait until a terminal event of the job arrived; return it, or None after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self._events.get(job_id, ()):
                    if event.is_terminal:
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    # -- paho callbacks (network thread) ------------------------------------------------------------------
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not reason_code.is_failure:
            client.subscribe(EVENTS_TOPIC, qos=1)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code_list: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if not any(rc.is_failure for rc in reason_code_list):
            self._ready.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        received = time.time()
        try:
            event = JobEvent.model_validate_json(message.payload)
        except ValidationError:
            return
        recorded = RecordedEvent(
            received,
            event.event_type,
            None if event.progress is None else float(event.progress),
            None if event.timestamp is None else float(event.timestamp),
        )
        with self._cond:
            self._events.setdefault(event.job_id, []).append(recorded)
            self._events.move_to_end(event.job_id)
            while len(self._events) > _MAX_JOBS:
                self._events.popitem(last=False)
            self._cond.notify_all()
