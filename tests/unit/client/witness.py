"""An independent witness of a deployment's jobs: an MQTT subscriber of ``inference/events`` (the load tests')."""

from __future__ import annotations

import json
import threading
import uuid
from urllib.parse import urlparse

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


class Witness:
    """Counts distinct job ids per event type on ``inference/events``."""

    def __init__(self, mqtt_url: str) -> None:
        self.seen: dict[str, set[str]] = {}
        self.lock = threading.Lock()
        ready = threading.Event()
        parsed = urlparse(mqtt_url)
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"witness-{uuid.uuid4().hex[:6]}")
        self.client.on_connect = lambda c, *a: c.subscribe("inference/events", 1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._on_message
        self.client.connect(parsed.hostname or "127.0.0.1", parsed.port or 1883)
        self.client.loop_start()
        assert ready.wait(10)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        try:
            data = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(data, dict) or "job_id" not in data:
            return  # not a job event (a retained capability message, say)
        with self.lock:
            self.seen.setdefault(str(data.get("event_type")), set()).add(str(data.get("job_id")))

    def jobs(self, event_type: str) -> set[str]:
        with self.lock:
            return set(self.seen.get(event_type, set()))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
