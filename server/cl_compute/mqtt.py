"""MQTT plumbing shared by the API server, the workers and the deployment launcher (paho-mqtt 2.x, API v2).

Everything speaks MQTT 3.1.1 so the same code runs on mosquitto and on the amqtt fallback broker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from cl_compute.profile import quirks

#: Environment variable: the MQTT keep-alive (seconds) of every connection of a deployment's processes (default
#: 30); a broker closes a silent connection, and publishes its last will, after 1.5 times it. The conformance
#: suites' private deployments shorten it to see a frozen worker's will sooner.
KEEPALIVE_ENV = "CL_COMPUTE_MQTT_KEEPALIVE"
DEFAULT_KEEPALIVE = 30

EVENTS_TOPIC = "inference/events"
WORKERS_TOPIC_PREFIX = "inference/workers"
#: cl_compute-internal: the API publishes a job id here once the job can be claimed (workers wake on it).
WAKE_TOPIC = "cl-compute/jobs/new"

log = logging.getLogger(__name__)


class MQTTConnectError(RuntimeError):
    """The broker could not be reached or refused the connection."""


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """``mqtt://host[:port]`` -> ``(host, port)`` (port default 1883).

    Raises:
        ValueError: another scheme or no host.
    """
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "tcp") or not parsed.hostname:
        raise ValueError(f"invalid MQTT URL {url!r}: expected mqtt://host:port")
    return parsed.hostname, parsed.port or 1883


@dataclass
class Will:
    """A last-will message registered in CONNECT."""

    topic: str
    payload: bytes = b""
    qos: int = 1
    retain: bool = True


MessageHandler = Callable[[str, bytes, bool], None]


class MQTTConnection:
    """A paho client with its network thread, (re)subscribing on every connect.

    Args:
        url: ``mqtt://host:port``.
        client_id_prefix: readable prefix of the random client id.
        subscriptions: topics subscribed (QoS 1) on every (re)connect.
        on_message: called as ``(topic, payload, retained)`` from the network thread; exceptions are logged.
        will: optional last will, registered before CONNECT.
        will_after_connect: register ``will`` only once the first CONNACK arrived, as upstream's worker does
            (profile quirk ``late_will``): paho sends a will only in CONNECT, so it does not apply to the first
            session, only after a reconnect.
    """

    def __init__(
        self,
        url: str,
        *,
        client_id_prefix: str = "cl-compute",
        subscriptions: Sequence[str] = (),
        on_message: MessageHandler | None = None,
        will: Will | None = None,
        will_after_connect: bool = False,
    ) -> None:
        self.url = url
        self.host, self.port = parse_mqtt_url(url)
        self._subscriptions = list(subscriptions)
        self._on_message = on_message
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._pending_subs: set[int] = set()
        self._connect_rc: str | None = None
        self._marker_mid: int | None = None
        self._marker_subscribed: threading.Event | None = None
        client_id = f"{client_id_prefix}-{uuid.uuid4().hex[:8]}"
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311, clean_session=True
        )
        # paho annotates the delays as int but only adds them to time.monotonic(): 0.2 s works as meant.
        self.client.reconnect_delay_set(0.2, 5)  # pyright: ignore[reportArgumentType]
        self._late_will = will if will_after_connect else None
        if will is not None and not will_after_connect:
            self.client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self.client.on_connect = self._handle_connect
        self.client.on_disconnect = self._handle_disconnect
        self.client.on_subscribe = self._handle_subscribe
        self.client.on_message = self._handle_message

    def _handle_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: object,
        reason_code: object,
        properties: object,
    ) -> None:
        if getattr(reason_code, "is_failure", False):
            self._connect_rc = str(reason_code)
            return
        sock = client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):  # small MQTT packets must not wait for Nagle/delayed ACK
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connected.set()
        if self._subscriptions:
            _rc, mid = client.subscribe([(t, 1) for t in self._subscriptions])
            if mid is not None:
                self._pending_subs.add(mid)
        else:
            self._subscribed.set()

    def _handle_disconnect(
        self, client: paho.Client, userdata: object, flags: object, reason_code: object, properties: object
    ) -> None:
        self._connected.clear()

    def _handle_subscribe(
        self, client: paho.Client, userdata: object, mid: int, reason_codes: object, properties: object
    ) -> None:
        marker = self._marker_subscribed
        if marker is not None and mid == self._marker_mid:
            marker.set()
            return
        self._pending_subs.discard(mid)
        if not self._pending_subs:
            self._subscribed.set()

    def _handle_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        if self._on_message is None:
            return
        try:
            self._on_message(msg.topic, bytes(msg.payload), bool(msg.retain))
        except Exception:
            log.exception("error handling MQTT message on %s", msg.topic)

    def start(self, timeout: float = 10.0) -> None:
        """Connect, start the network thread and wait for CONNACK and SUBACK.

        Raises:
            MQTTConnectError: no CONNACK within ``timeout`` or the broker refused.
        """
        try:
            self.client.connect(self.host, self.port, keepalive=keepalive())
        except OSError as exc:
            raise MQTTConnectError(f"cannot connect to MQTT broker {self.url}: {exc}") from exc
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.client.loop_stop()
            detail = f" (refused: {self._connect_rc})" if self._connect_rc else ""
            raise MQTTConnectError(f"MQTT broker {self.url} did not accept the connection{detail}")
        will = self._late_will
        if will is not None:  # too late for this session's CONNECT: only a reconnect would carry it
            self.client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> None:
        """Publish without waiting (paho queues it while disconnected)."""
        self.client.publish(topic, payload, qos=qos, retain=retain)

    def publish_wait(
        self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False, timeout: float = 2.0
    ) -> bool:
        """Publish and wait until the broker acknowledged it (QoS 1) or ``timeout``; True if acknowledged.

        While the connection is known to be down, nothing is waited for (paho queues the message and sends it
        after the reconnect): a request must not stall for a broker that is gone.
        """
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if not self._connected.is_set():
            return False
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def publish_event(self, job_id: str, event_type: str, progress: int, timestamp: int, wait: bool = False) -> None:
        """Publish a job event on ``inference/events`` (QoS 1, not retained; retained with the planted fault
        ``fault_retained_job_events``)."""
        payload = json.dumps({"job_id": job_id, "event_type": event_type, "timestamp": timestamp, "progress": progress})
        retain = quirks().fault_retained_job_events
        if wait:
            self.publish_wait(EVENTS_TOPIC, payload, retain=retain)
        else:
            self.publish(EVENTS_TOPIC, payload, retain=retain)

    def flush_retained(self, timeout: float = 2.0) -> bool:
        """Wait until the retained messages sent after our SUBACK have been delivered to ``on_message``.

        The broker sends them in order on this connection, so a round trip through a private topic
        subscribed *after* them proves they all arrived. Returns False on timeout.
        """
        marker = f"cl-compute/marker/{uuid.uuid4().hex}"
        seen = threading.Event()
        subscribed = threading.Event()

        def _marker_seen(client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
            seen.set()

        self.client.message_callback_add(marker, _marker_seen)
        try:
            _rc, mid = self.client.subscribe(marker, 1)
            self._marker_mid = mid
            self._marker_subscribed = subscribed
            if not subscribed.wait(timeout):
                return False
            self.client.publish(marker, b"1", qos=1)
            return seen.wait(timeout)
        finally:
            self._marker_subscribed = None
            self.client.message_callback_remove(marker)
            self.client.unsubscribe(marker)

    def stop(self) -> None:
        """Disconnect cleanly (no will) and stop the network thread."""
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


def keepalive() -> int:
    """The keep-alive of this process's MQTT connections: ``CL_COMPUTE_MQTT_KEEPALIVE`` (seconds ≥ 1), else 30."""
    raw = os.environ.get(KEEPALIVE_ENV, "")
    try:
        return max(1, int(raw)) if raw else DEFAULT_KEEPALIVE
    except ValueError:
        log.warning("ignoring %s=%r: not a whole number of seconds", KEEPALIVE_ENV, raw)
        return DEFAULT_KEEPALIVE


def wait_for_broker(url: str, timeout: float) -> None:
    """Block until a broker at ``url`` accepts an MQTT connection.

    Raises:
        MQTTConnectError: not within ``timeout``.
    """
    import time

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        conn = MQTTConnection(url, client_id_prefix="cl-compute-probe")
        try:
            conn.start(timeout=max(0.1, min(2.0, deadline - time.monotonic())))
            conn.stop()
            return
        except MQTTConnectError as exc:
            last = exc
            time.sleep(0.02)
    raise MQTTConnectError(f"MQTT broker {url} not accepting connections after {timeout:.1f} s: {last}")
