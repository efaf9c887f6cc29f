"""Helpers of the protocol suite: raw HTTP (no client-side checks or quoting) and a raw MQTT tap.

The protocol checks talk to the deployment the way a foreign client would, so that nothing in ``cl_client``
(validation before sending, URL quoting, status normalisation) hides what the server itself does.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

import httpcore
import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cl_client._tls import shared_ssl_context
from pytest_cl.config import resolve_settings
from pytest_cl.deployment import DeploymentInfo

EVENTS_TOPIC = "inference/events"
WORKERS_TOPIC = "inference/workers/+"
TERMINAL = frozenset({"completed", "error", "failed"})


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch (the unit of every protocol timestamp)."""
    return int(time.time() * 1000)


def is_uuid4(value: object) -> bool:
    """True for a canonical UUID4 string (what the server must make for job ids)."""
    if not isinstance(value, str):
        return False
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return False
    return parsed.version == 4 and str(parsed) == value.lower()


def bearer_headers(config: pytest.Config) -> dict[str, str]:
    """The ``Authorization`` header the suite was configured with (``--cl-token`` or a login), else none."""
    settings = resolve_settings(config)
    token = settings.token
    if token is None and settings.auth_url and settings.username:
        response = httpx.post(
            f"{settings.auth_url.rstrip('/')}/auth/token",
            data={"username": settings.username, "password": settings.password or ""},
            timeout=10.0,
        )
        response.raise_for_status()
        token = str(response.json()["access_token"])
    return {"Authorization": f"Bearer {token}"} if token else {}


@dataclass
class RawHTTP:
    """Plain httpx against one deployment, plus GETs of unnormalised request targets through httpcore.

    Attributes:
        base_url: the compute API.
        headers: headers sent with every request (the configured token, if any).
    """

    base_url: str
    headers: dict[str, str] = field(default_factory=dict[str, str])
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(
            base_url=self.base_url, headers=self.headers, timeout=30.0, verify=shared_ssl_context()
        )

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        """``GET path`` (httpx normalises ``..`` segments: use ``raw_get`` for those)."""
        return self.client.get(path, **kwargs)  # type: ignore[arg-type]

    def delete(self, path: str, **kwargs: object) -> httpx.Response:
        """``DELETE path``."""
        return self.client.delete(path, **kwargs)  # type: ignore[arg-type]

    def post_job(
        self,
        task_type: str,
        *,
        file: tuple[str, bytes] | None,
        fields: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """``POST /jobs/{task_type}`` as multipart: the ``file`` part (name, bytes) if given, fields as parts.

        Fields are sent as multipart parts without a filename even when there is no file, so that a
        missing file is a multipart request without a ``file`` part (not an urlencoded body).
        """
        parts: list[tuple[str, tuple[str | None, bytes | str] | tuple[str, bytes, str]]] = [
            (name, (None, value)) for name, value in (fields or {}).items()
        ]
        if file is not None:
            parts.append(("file", (file[0], file[1], "application/octet-stream")))
        if not parts:
            parts.append(("_", (None, "")))
        return self.client.post(f"/jobs/{task_type}", files=parts, headers=dict(headers or {}))

    def raw_get(self, target: str, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        """``GET`` with the request target sent byte for byte (no dot-segment removal, no quoting).

        Returns:
            ``(status, body)``.
        """
        url = urlsplit(self.base_url)
        port = url.port or (443 if url.scheme == "https" else 80)
        all_headers = {"Host": url.netloc, **self.headers, **dict(headers or {})}
        with httpcore.ConnectionPool() as pool:
            response = pool.request(
                "GET",
                httpcore.URL(scheme=url.scheme.encode(), host=(url.hostname or "").encode(), port=port, target=target),
                headers=list(all_headers.items()),
            )
        return response.status, response.content


@contextmanager
def raw_http(config: pytest.Config, info: DeploymentInfo, *, token: bool = True) -> Iterator[RawHTTP]:
    """A ``RawHTTP`` for the deployment under test (with the configured token unless ``token`` is False)."""
    http = RawHTTP(info.server_url, bearer_headers(config) if token else {})
    try:
        yield http
    finally:
        http.close()


def detail_locs(response: httpx.Response) -> list[list[object]]:
    """The ``loc`` of every entry of a FastAPI validation error body (fails when it is not one)."""
    body = response.json()
    detail = body.get("detail") if isinstance(body, dict) else None
    assert isinstance(detail, list) and detail, f"422 body is not a FastAPI validation error: {body!r}"
    locs: list[list[object]] = []
    for entry in detail:
        assert isinstance(entry, dict) and isinstance(entry.get("loc"), list), f"bad validation entry {entry!r}"
        locs.append(list(entry["loc"]))
    return locs


@dataclass(frozen=True)
class Message:
    """One MQTT message as the tap received it."""

    topic: str
    payload: bytes
    retain: bool
    received: float

    def json(self) -> object:
        """The payload decoded as JSON (None for an empty payload)."""
        return json.loads(self.payload) if self.payload else None


class MqttTap:
    """A paho client of our own: subscribes to topics and keeps every message (thread-safe).

    Args:
        mqtt_url: ``mqtt://host:port`` (``mqtts://`` for TLS).
        topics: topic filters to subscribe to.
    """

    def __init__(self, mqtt_url: str, topics: tuple[str, ...]) -> None:
        url = urlsplit(mqtt_url)
        self._host = url.hostname or "localhost"
        self._port = url.port or (8883 if url.scheme == "mqtts" else 1883)
        self._topics = topics
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self.messages: list[Message] = []
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"cl-conformance-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv311,
        )
        if url.username:
            self._client.username_pw_set(url.username, url.password)
        if url.scheme == "mqtts":
            self._client.tls_set()  # pyright: ignore[reportUnknownMemberType]
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def __enter__(self) -> MqttTap:
        self._client.connect(self._host, self._port, 30)
        self._client.loop_start()
        if not self._ready.wait(10.0):
            self.close()
            raise AssertionError(f"MQTT: no SUBACK for {self._topics} from {self._host}:{self._port} within 10 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not reason_code.is_failure:
            client.subscribe([(t, 1) for t in self._topics])

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
        with self._cond:
            self.messages.append(Message(message.topic, bytes(message.payload), bool(message.retain), time.time()))
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes, timeout: float = 10.0) -> bool:
        """Publish ``payload`` on ``topic`` (QoS 1, not retained); True once the broker acknowledged it."""
        info = self._client.publish(topic, payload, qos=1)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def snapshot(self) -> list[Message]:
        """The messages received so far."""
        with self._cond:
            return list(self.messages)

    def wait_until(self, predicate: Callable[[list[Message]], bool], timeout: float) -> bool:
        """Wait until ``predicate(messages)`` holds (re-checked on every message); False after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(list(self.messages)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def job_events(self, job_id: str) -> list[dict[str, object]]:
        """The decoded ``inference/events`` payloads of one job, in arrival order."""
        return [cast(dict[str, object], m.json()) for m in job_event_messages(self.snapshot(), job_id)]

    def has_terminal(self, job_id: str) -> Callable[[list[Message]], bool]:
        """A predicate for ``wait_until``: a terminal event of ``job_id`` arrived."""

        def check(messages: list[Message]) -> bool:
            del messages
            return any(e.get("event_type") in TERMINAL for e in self.job_events(job_id))

        return check


def job_event_messages(messages: list[Message], job_id: str) -> list[Message]:
    """The ``inference/events`` messages of one job among ``messages`` (undecodable payloads left out), in order."""
    out: list[Message] = []
    for m in messages:
        if m.topic != EVENTS_TOPIC:
            continue
        try:
            data = m.json()
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("job_id") == job_id:
            out.append(m)
    return out
