"""The amqtt fallback broker delivers a retained message only to a subscription that matches it (MQTT 3.1.1).

amqtt 0.12 on its own sends a connecting client every retained message that matches a topic filter *some other*
client subscribed to (``cl_compute._amqtt_broker``'s module documentation says why); our wrapper must not. The
same checks run against mosquitto when it is installed, as the behaviour both brokers must share.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cl_compute.broker import Broker, find_mosquitto, start_amqtt, start_mosquitto
from cl_compute.deployment import Deployment


class _Client:
    """A real paho client that records ``(topic, payload, retain)`` of every message."""

    def __init__(self, url: str, topics: list[str], keepalive: int = 30) -> None:
        host, port = url.removeprefix("mqtt://").rsplit(":", 1)
        self.messages: list[tuple[str, bytes, bool]] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}")
        self._topics = topics
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(host, int(port), keepalive)
        self.client.loop_start()
        if topics:
            assert self._subscribed.wait(10), f"no SUBACK for {topics}"

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object) -> None:
        if self._topics:
            client.subscribe([(t, 1) for t in self._topics])

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, rcs: object, props: object) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    def wait_for(self, topic: str, timeout: float = 10.0) -> bool:
        """Wait until a message on ``topic`` arrived."""
        with self._cond:
            return self._cond.wait_for(lambda: any(t == topic for t, _p, _r in self.messages), timeout)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the broker's acknowledgement."""
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def _brokers() -> list[str]:
    return ["amqtt", "mosquitto"] if find_mosquitto() else ["amqtt"]


@pytest.fixture(params=_brokers())
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    kind = str(request.param)  # pyright: ignore[reportAny]
    if kind == "amqtt":
        started = start_amqtt()
    else:
        binary = find_mosquitto()
        assert binary is not None
        started = start_mosquitto(binary)
    try:
        yield started
    finally:
        started.stop()


def test_a_retained_message_reaches_only_matching_subscriptions(broker: Broker) -> None:
    """With another client subscribed to ``inference/workers/+`` (as the API is) and a retained capability
    message on ``inference/workers/w1``: a client subscribed only to ``inference/events`` gets nothing of it
    (checked after a round trip through a marker topic of its own, which arrives after anything the broker sent
    it at connect), and a new ``inference/workers/+`` subscription gets it with the retain flag."""
    watcher = _Client(broker.url, ["inference/workers/+"])
    worker = _Client(broker.url, [])
    events_only: _Client | None = None
    late: _Client | None = None
    try:
        worker.publish("inference/workers/w1", b'{"id": "w1"}', retain=True)
        assert watcher.wait_for("inference/workers/w1")
        marker = f"test/marker/{uuid.uuid4().hex}"
        events_only = _Client(broker.url, ["inference/events", marker])
        events_only.publish(marker, b"1")
        assert events_only.wait_for(marker), "the marker never came back"
        foreign = [(t, p, r) for t, p, r in events_only.messages if t != marker]
        assert foreign == [], f"{broker.kind}: a client subscribed to inference/events only received {foreign}"
        late = _Client(broker.url, ["inference/workers/+"])
        assert late.wait_for("inference/workers/w1"), f"{broker.kind}: a new subscription got no retained message"
        assert late.messages[0] == ("inference/workers/w1", b'{"id": "w1"}', True)
    finally:
        for c in (watcher, worker, events_only, late):
            if c is not None:
                c.close()


def test_an_amqtt_deployment_sends_an_events_subscriber_only_events() -> None:
    """The reported defect end to end: a ``cl_compute`` deployment on the amqtt broker (forced: mosquitto is
    installed here) and a client subscribed to ``inference/events`` only, which must not receive the retained
    capability message of ``inference/workers/worker-1`` (``benchmarks/bench_server.py`` crashed on it)."""
    with Deployment(workers=1, tasks=["hash"], broker="amqtt", worker_shutdown_grace=1.0) as dep:
        assert dep.broker_kind == "amqtt"
        marker = f"test/marker/{uuid.uuid4().hex}"
        client = _Client(dep.mqtt_url, ["inference/events", marker])
        try:
            client.publish(marker, b"1")
            assert client.wait_for(marker)
            foreign = [(t, r) for t, _p, r in client.messages if t != marker]
            assert foreign == [], f"an inference/events subscriber received {foreign}"
        finally:
            client.close()


def test_the_broker_keeps_accepting_connections_after_many(broker: Broker) -> None:
    """Both brokers log every connection. Their log went to a pipe that nobody read once the broker ran, so after
    about 240 connections mosquitto blocked on the full pipe and accepted no further connection (a long-lived
    ``cl-compute up`` and the test suites' session deployments stopped answering). 600 connect/disconnect
    rounds, each of which must be accepted."""
    for i in range(600):
        client = _Client(broker.url, [])
        connected = client.client.is_connected()
        for _ in range(1000):  # CONNACK within 10 s
            if connected:
                break
            threading.Event().wait(0.01)
            connected = client.client.is_connected()
        client.close()
        assert connected, f"{broker.kind} accepted no connection after {i} connect/disconnect rounds"
    assert broker.process.poll() is None, f"{broker.kind} exited"


def _utf8(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def _frozen_client(url: str, will_topic: str, keepalive: int) -> socket.socket:
    """A client that sends CONNECT (clean session, a retained QoS 1 will, ``keepalive`` s), reads its CONNACK, then
    sends nothing more and keeps the connection open: a process frozen with SIGSTOP, seen from the broker."""
    host, port = url.removeprefix("mqtt://").rsplit(":", 1)
    flags = 0x02 | 0x04 | 0x08 | 0x20  # clean session, will, will QoS 1, will retain
    variable = _utf8("MQTT") + bytes([4, flags]) + keepalive.to_bytes(2, "big")
    payload = _utf8(f"frozen-{uuid.uuid4().hex[:8]}") + _utf8(will_topic) + _utf8("")
    body = variable + payload
    assert len(body) < 128  # one-byte remaining length
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(bytes([0x10, len(body)]) + body)
    connack = sock.recv(4)
    assert connack[:2] == b"\x20\x02" and connack[3] == 0, f"CONNACK {connack!r}"
    return sock


def test_a_silent_client_is_dropped_after_one_and_a_half_keep_alives_and_its_will_sent(broker: Broker) -> None:
    """MQTT 3.1.1 §3.1.2.10: a client that sends nothing for 1.5 keep-alives is disconnected as a network failure,
    so its will goes out. amqtt 0.12 never did (a frozen worker's retained capability message stayed for ever);
    ``cl_compute._amqtt_broker`` makes it, and mosquitto always has. A live client that pings stays."""
    topic = f"inference/workers/frozen-{uuid.uuid4().hex[:6]}"
    watcher = _Client(broker.url, [topic])
    live = _Client(broker.url, [], keepalive=1)  # paho pings within its keep-alive: it must not be dropped meanwhile
    frozen = _frozen_client(broker.url, topic, keepalive=1)
    try:
        assert watcher.wait_for(topic, timeout=30), (
            f"{broker.kind} never sent the will of a client silent for 30 s with a keep-alive of 1 s"
        )
        assert frozen.recv(1) == b"", "the broker kept the silent client's connection open"
        assert live.client.is_connected(), f"{broker.kind} dropped a client that pings within its keep-alive"
    finally:
        frozen.close()
        watcher.close()
        live.close()
